"""``LIPTrainer``: Detectron2's ``DefaultTrainer`` with AP-by-size evaluation, :class:`LIPCheckpointer`
and multi-process training on CPU as well as on GPUs."""
import os
import weakref

from detectron2.engine import AMPTrainer, DefaultTrainer, SimpleTrainer, TrainerBase
from detectron2.engine import create_ddp_model as d2_create_ddp_model
from detectron2.utils import comm

from ..checkpoint import LIPCheckpointer
from ..data import malformed_annotations_as_dataset_error
from ..evaluation import SizeAPEvaluator

__all__ = ["LIPTrainer", "create_ddp_model"]


def create_ddp_model(model, **kwargs):
    """Detectron2's :func:`create_ddp_model`, for CPU models too: they get ``device_ids=None``
    (DistributedDataParallel rejects Detectron2's default ``[local_rank]`` for a CPU module;
    ``launch`` picks the gloo backend there)."""
    if all(p.device.type == "cpu" for p in model.parameters()):
        kwargs.setdefault("device_ids", None)
    return d2_create_ddp_model(model, **kwargs)


class LIPTrainer(DefaultTrainer):
    """A :class:`DefaultTrainer` that evaluates with :class:`SizeAPEvaluator`, loads and saves with
    :class:`LIPCheckpointer` (exact ImageNet warm starts, atomic checkpoints) and trains with
    several processes on CPU too. A malformed annotation file is a one-line ``DatasetError``."""

    def __init__(self, cfg):
        # DefaultTrainer.__init__, but for two objects it builds inline, with no hook to build them
        # otherwise: the DDP wrapper (its create_ddp_model gives a CPU model device_ids=[local_rank],
        # which DDP rejects) and the checkpointer (the hooks built last take it).
        TrainerBase.__init__(self)
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        model = create_ddp_model(model, broadcast_buffers=False)
        self._trainer = (AMPTrainer if cfg.SOLVER.AMP.ENABLED else SimpleTrainer)(model, data_loader, optimizer)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = LIPCheckpointer(model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self))
        self.start_iter, self.max_iter, self.cfg = 0, cfg.SOLVER.MAX_ITER, cfg
        self.register_hooks(self.build_hooks())

    @classmethod
    def build_train_loader(cls, cfg):
        with malformed_annotations_as_dataset_error(cfg.DATASETS.TRAIN):
            return super().build_train_loader(cfg)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        with malformed_annotations_as_dataset_error([dataset_name]):
            return super().build_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        """AP, AP50, AP75, COCO's APs/APm/APl and finer size bins, written to
        ``OUTPUT_DIR/inference/<dataset_name>`` unless ``output_folder`` is given."""
        return SizeAPEvaluator(dataset_name, output_dir=output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name))
