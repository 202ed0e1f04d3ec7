"""Training with Detectron2's LazyConfig (Python) configs, with what :class:`LIPTrainer` guarantees:
AP by size, atomic checkpoints (:class:`LIPCheckpointer`), resume, multi-process CPU training.

A config has Detectron2's ``model``, ``dataloader.{train,test,evaluator}``, ``optimizer``,
``lr_multiplier`` and ``train`` (``configs/common/train.py`` of Detectron2's model zoo, plus the
``train`` keys of :data:`TRAIN_DEFAULTS`).
"""
import dataclasses
import difflib
import inspect
import os

from detectron2.config import instantiate
from detectron2.engine import AMPTrainer, SimpleTrainer, default_writers, hooks
from detectron2.evaluation import COCOEvaluator, inference_on_dataset, print_csv_format
from detectron2.utils import comm
from detectron2.utils.registry import locate
from omegaconf import DictConfig, ListConfig, OmegaConf

from ..checkpoint import LIPCheckpointer
from ..config import check_lip_stages
from ..data import malformed_annotations_as_dataset_error
from ..evaluation import SizeAPEvaluator
from ..layers import CONFIG_KEYS, DownsampleSpec, LIPConfigError, check_downsample_options
from ..modeling.backbone import LIP_BUILDERS
from .trainer import create_ddp_model

__all__ = [
    "TRAIN_DEFAULTS",
    "config_target",
    "check_lazy_lip_options",
    "lazy_dataset_names",
    "lazy_num_classes",
    "prepare_lazy_config",
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


def lazy_num_classes(cfg):
    """(config key, value) of the model's class count, or None when it has none."""
    for key in ("model.roi_heads.num_classes", "model.num_classes"):  # R-CNNs; RetinaNet, FCOS
        value = OmegaConf.select(cfg, key, default=None)
        if isinstance(value, int):
            return key, value
    return None


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
    lip_keywords = list(CONFIG_KEYS)
    params = inspect.signature(target).parameters.values()
    arguments = [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    for key in node:
        if key != "_target_" and key not in lip_keywords and key not in arguments:
            raise LIPConfigError(_unknown_keyword(f"{path}.{key}", target, lip_keywords, arguments))
    options = {**dataclasses.asdict(DownsampleSpec()), **{name: node[name] for name in lip_keywords if name in node}}
    check_downsample_options(options, key=lambda name: f"{path}.{name}")
    if "lip_stages" in node:
        check_lip_stages(f"{path}.lip_stages", node.lip_stages)


def check_lazy_lip_options(cfg):
    """Raises :class:`LIPConfigError` (one line) on the first unknown keyword or bad LIP value of a LazyCall
    of :data:`~lip_det.modeling.backbone.LIP_BUILDERS` in ``cfg.model``, spelt as written
    (``model.backbone.bottom_up.stages.pooling``). The values allowed are ``MODEL.LIP``'s."""
    for path, node in _lazy_calls(cfg.model, "model"):
        target = config_target(node)
        if target in LIP_BUILDERS:
            _check_lip_call(path, node, target)


def _sync_bn_to_naive(node):
    """Replaces every ``"SyncBN"`` under ``node`` by ``"naiveSyncBN"``; returns how many."""
    count = 0
    for key, value in _items(node):
        if isinstance(value, (DictConfig, ListConfig)):
            count += _sync_bn_to_naive(value)
        elif value == "SyncBN":
            node[key] = "naiveSyncBN"
            count += 1
    return count


def prepare_lazy_config(cfg):
    """Config overrides a run needs (in place); returns one line for each made, to log:

    - on CPU, ``norm="SyncBN"`` becomes ``"naiveSyncBN"`` (Detectron2's ``NaiveSyncBatchNorm``):
      torch's SyncBatchNorm rejects CPU tensors under gloo; in one process both are plain BN;
    - a ``COCOEvaluator`` becomes a :class:`SizeAPEvaluator` (a subclass, same arguments) writing to
      ``<train.output_dir>/inference/<dataset>``.
    """
    notes = []
    if cfg.train.device == "cpu":
        count = _sync_bn_to_naive(cfg.model)
        if count:
            notes.append(f"CPU run: {count} SyncBN norm(s) of the model are naiveSyncBN (plain BN in one process)")
    evaluator = cfg.dataloader.get("evaluator")
    if evaluator is not None and config_target(evaluator) in (COCOEvaluator, SizeAPEvaluator):
        evaluator._target_ = SizeAPEvaluator
        name = evaluator.dataset_name if isinstance(evaluator.dataset_name, str) else evaluator.dataset_name[0]
        evaluator.setdefault("output_dir", os.path.join(cfg.train.output_dir, "inference", name))
        evaluator.setdefault("run_label", os.path.basename(os.path.normpath(cfg.train.output_dir)))
        notes.append(f"evaluation: SizeAPEvaluator (AP by object size), written to {evaluator.output_dir}")
    return notes


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
    model = instantiate(cfg.model).to(cfg.train.device)
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
