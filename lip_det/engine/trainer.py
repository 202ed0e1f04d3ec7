"""``LIPTrainer``: Detectron2's ``DefaultTrainer`` with AP-by-size evaluation, atomic
checkpoints and multi-process training on CPU."""
import contextlib
import functools
import os

import detectron2.engine.defaults as d2_defaults
from detectron2.engine import DefaultTrainer

from ..evaluation import SizeAPEvaluator
from .checkpoint import make_saves_atomic

__all__ = ["LIPTrainer"]


@contextlib.contextmanager
def _ddp_for_device(device):
    """DefaultTrainer wraps the model in DDP with ``device_ids=[local_rank]``, which PyTorch
    rejects for a CPU module. On CPU (gloo, as ``launch`` picks without a GPU) pass none."""
    if not str(device).startswith("cpu"):
        yield
        return
    original = d2_defaults.create_ddp_model
    d2_defaults.create_ddp_model = functools.partial(original, device_ids=None)
    try:
        yield
    finally:
        d2_defaults.create_ddp_model = original


class LIPTrainer(DefaultTrainer):
    """DefaultTrainer that evaluates with :class:`SizeAPEvaluator`, saves checkpoints
    atomically and trains with several processes on CPU as well as on GPUs."""

    def __init__(self, cfg):
        with _ddp_for_device(cfg.MODEL.DEVICE):
            super().__init__(cfg)
        make_saves_atomic(self.checkpointer)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        """AP, AP50, AP75, COCO's APs/APm/APl and finer size bins, written to
        ``OUTPUT_DIR/inference/<dataset_name>`` unless ``output_folder`` is given."""
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        run_label = os.path.basename(os.path.normpath(cfg.OUTPUT_DIR))
        return SizeAPEvaluator(dataset_name, output_dir=output_folder, run_label=run_label)
