"""``LIPTrainer``: Detectron2's ``DefaultTrainer`` with AP-by-size evaluation, atomic
checkpoints and multi-process training on CPU."""
import contextlib
import functools
import os

import detectron2.engine.defaults as d2_defaults
from detectron2.engine import DefaultTrainer

from ..checkpoint import LIPCheckpointer
from ..evaluation import SizeAPEvaluator
from .checkpoint import make_saves_atomic

__all__ = ["LIPTrainer"]


@contextlib.contextmanager
def _patched(module, name, value):
    original = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, original)


@contextlib.contextmanager
def _trainer_parts(device):
    """What ``DefaultTrainer.__init__`` builds, adjusted while it runs:

    - its checkpointer is a :class:`LIPCheckpointer` (ImageNet LIP / torchvision / MSRA
      weights load by exact names, with a report of what is new, and .pth files are read
      with ``weights_only=True``);
    - on CPU its DDP wrapper gets no ``device_ids`` (PyTorch rejects ``[local_rank]`` for a
      CPU module; ``launch`` picks gloo there).
    """
    with contextlib.ExitStack() as stack:
        stack.enter_context(_patched(d2_defaults, "DetectionCheckpointer", LIPCheckpointer))
        if str(device).startswith("cpu"):
            ddp = functools.partial(d2_defaults.create_ddp_model, device_ids=None)
            stack.enter_context(_patched(d2_defaults, "create_ddp_model", ddp))
        yield


class LIPTrainer(DefaultTrainer):
    """DefaultTrainer that evaluates with :class:`SizeAPEvaluator`, loads weights with
    :class:`LIPCheckpointer`, saves checkpoints atomically and trains with several processes
    on CPU as well as on GPUs."""

    def __init__(self, cfg):
        with _trainer_parts(cfg.MODEL.DEVICE):
            super().__init__(cfg)
        make_saves_atomic(self.checkpointer)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        """AP, AP50, AP75, COCO's APs/APm/APl and finer size bins, written to
        ``OUTPUT_DIR/inference/<dataset_name>`` unless ``output_folder`` is given."""
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        run_label = os.path.basename(os.path.normpath(cfg.OUTPUT_DIR))
        return SizeAPEvaluator(dataset_name, output_dir=output_folder, run_label=run_label)
