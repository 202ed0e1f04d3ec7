"""Training with Detectron2's LazyConfig (Python) configs, with what :class:`LIPTrainer` guarantees:
atomic checkpoints and exact warm starts (:class:`LIPCheckpointer`), resume, multi-process CPU training.

A config has Detectron2's ``model``, ``dataloader.{train,test,evaluator}``, ``optimizer``,
``lr_multiplier`` and ``train`` (``configs/common/train.py`` of Detectron2's model zoo, plus the
``train`` keys of :data:`TRAIN_DEFAULTS`). :func:`lazy_train` and :func:`lazy_test` are ``do_train``
and ``do_test`` of Detectron2's ``tools/lazyconfig_train_net.py``, which Detectron2 does not install:
they differ in the checkpointer, the DDP wrapper (CPU too) and one-line dataset errors.
"""
import difflib
import inspect
import logging

from detectron2.config import instantiate
from detectron2.engine import AMPTrainer, SimpleTrainer, default_writers, hooks
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.layers import NaiveSyncBatchNorm
from detectron2.utils import comm
from detectron2.utils.registry import locate
from lip_det.config import check_lip_stages
from lip_det.layers import MODEL_LIP_KEYS, DownsampleSpec, LIPConfigError
from lip_det.modeling.backbone import LAZY_LIP_TARGETS
from omegaconf import DictConfig, ListConfig
from torch import nn

from ..checkpoint import LIPCheckpointer
from ..data import malformed_annotations_as_dataset_error
from .trainer import create_ddp_model

__all__ = [
    "TRAIN_DEFAULTS",
    "config_target",
    "check_lazy_lip_options",
    "lazy_dataset_names",
    "naive_sync_batchnorm",
    "build_lazy_trainer",
    "lazy_test",
    "lazy_train",
]

TRAIN_DEFAULTS = {"seed": -1, "cudnn_benchmark": False, "float32_precision": ""}
"""``train`` keys Detectron2's ``default_setup`` reads that its ``common/train.py`` leaves out."""


def _names(loader):
    names = loader.get("dataset", {}).get("names", ())
    return [names] if isinstance(names, str) else list(names)


def lazy_dataset_names(cfg, eval_only=False):
    """The registered datasets a run loads (``dataloader.{test,train}.dataset.names``)."""
    names = _names(cfg.dataloader.test) if "test" in cfg.dataloader else []
    return names + ([] if eval_only else _names(cfg.dataloader.train))


def config_target(node):
    """What a LazyCall node calls (its ``_target_``, located when a saved config holds its name)."""
    target = node.get("_target_")
    return locate(target) if isinstance(target, str) else target


def _items(node):
    """(key, value) pairs of a DictConfig or (index, value) pairs of a ListConfig."""
    return node.items() if isinstance(node, DictConfig) else enumerate(node)


def _lazy_calls(node, path):
    """(path, node) of every LazyCall at or under ``node`` (a DictConfig or ListConfig found at ``path``)."""
    if isinstance(node, DictConfig) and "_target_" in node:
        yield path, node
    for key, value in _items(node):
        if isinstance(value, (DictConfig, ListConfig)):
            yield from _lazy_calls(value, f"{path}.{key}")


def _unknown_keyword(key, target, lip_keywords, arguments):
    """The message for ``key``, which ``target`` does not take."""
    name = key.rpartition(".")[2]
    close = difflib.get_close_matches(name, lip_keywords + arguments, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return (f"{key} is not an argument of {target.__name__}{hint}; LIP keywords: {', '.join(lip_keywords)}; "
            f"other arguments: {', '.join(arguments)}")


def _check_lip_call(path, node, target):
    lip_keywords = list(MODEL_LIP_KEYS)
    params = inspect.signature(target).parameters.values()
    arguments = [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    for key in node:
        if key != "_target_" and key not in lip_keywords and key not in arguments:
            raise LIPConfigError(_unknown_keyword(f"{path}.{key}", target, lip_keywords, arguments))
    DownsampleSpec(**{name: node[name] for name in lip_keywords if name in node}, spelling=lambda name: f"{path}.{name}")
    if "lip_stages" in node:
        check_lip_stages(node.lip_stages, node.get("res5_dilation", 1), f"{path}.lip_stages", f"{path}.res5_dilation")


def check_lazy_lip_options(cfg):
    """Raises :class:`LIPConfigError` (one line) on the first unknown keyword or bad LIP value of a LazyCall
    of :data:`~lip_det.modeling.backbone.LAZY_LIP_TARGETS` in ``cfg.model``, spelt as written
    (``model.backbone.bottom_up.stages.pooling``): the check those callables make when they run, made
    before a run launches."""
    for path, node in _lazy_calls(cfg.model, "model"):
        target = config_target(node)
        if target in LAZY_LIP_TARGETS:
            _check_lip_call(path, node, target)


def naive_sync_batchnorm(module):
    """Replaces every torch ``SyncBatchNorm`` in ``module`` by Detectron2's ``NaiveSyncBatchNorm`` (the same
    statistics, synchronised through ``torch.distributed`` on any device; torch's rejects CPU tensors once
    several processes train), as ``nn.SyncBatchNorm.convert_sync_batchnorm`` converts the other way.
    ``module`` is on the CPU; returns how many it replaced."""
    count = 0
    for name, child in module.named_children():
        if isinstance(child, nn.SyncBatchNorm):
            naive = NaiveSyncBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                       child.track_running_stats)
            naive.load_state_dict(child.state_dict())
            naive.train(child.training)
            for new, old in zip(naive.parameters(), child.parameters()):
                new.requires_grad_(old.requires_grad)
            setattr(module, name, naive)
            count += 1
        else:
            count += naive_sync_batchnorm(child)
    return count


def lazy_test(cfg, model):
    """Evaluates ``model`` on ``dataloader.test`` with ``dataloader.evaluator``; returns the results."""
    if cfg.dataloader.get("evaluator") is None:
        return {}
    with malformed_annotations_as_dataset_error(_names(cfg.dataloader.test)):
        loader = instantiate(cfg.dataloader.test)
    results = inference_on_dataset(model, loader, instantiate(cfg.dataloader.evaluator))
    if comm.is_main_process():
        print_csv_format(results)
    return results


def build_lazy_trainer(cfg):
    """The trainer of a LazyConfig run and its checkpointer, hooks registered.

    Returns:
        (SimpleTrainer or AMPTrainer, LIPCheckpointer): the checkpointer saves the trainer's state too.
    """
    model = instantiate(cfg.model)
    if cfg.train.device == "cpu" and comm.get_world_size() > 1:
        count = naive_sync_batchnorm(model)
        if count:
            logging.getLogger(__name__).info(f"CPU run: {count} SyncBN norm(s) of the model are naiveSyncBN")
    model.to(cfg.train.device)
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    with malformed_annotations_as_dataset_error(_names(cfg.dataloader.train)):
        train_loader = instantiate(cfg.dataloader.train)
    model = create_ddp_model(model, **cfg.train.ddp)
    trainer = (AMPTrainer if cfg.train.amp.enabled else SimpleTrainer)(model, train_loader, optimizer)
    checkpointer = LIPCheckpointer(model, cfg.train.output_dir, trainer=trainer)
    main = comm.is_main_process()
    trainer.register_hooks([
        hooks.IterationTimer(),
        hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
        hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer) if main else None,
        hooks.EvalHook(cfg.train.eval_period, lambda: lazy_test(cfg, model)),
        hooks.PeriodicWriter(default_writers(cfg.train.output_dir, cfg.train.max_iter), cfg.train.log_period)
        if main else None,
    ])
    return trainer, checkpointer


def lazy_train(cfg, resume=False):
    """Trains (from ``train.init_checkpoint``, or from the last checkpoint with ``resume``); returns the trainer."""
    trainer, checkpointer = build_lazy_trainer(cfg)
    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=resume)
    # A checkpoint holds the iteration that had finished when it was saved.
    start_iter = trainer.iter + 1 if resume and checkpointer.has_checkpoint() else 0
    trainer.train(start_iter, cfg.train.max_iter)
    return trainer
