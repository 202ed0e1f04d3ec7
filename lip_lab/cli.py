"""What the command-line tools share: config loading (YACS and LazyConfig), input checks, worker setup,
one-line errors.

A tool's ``main`` is wrapped in :func:`reports_input_errors`: bad input (:data:`INPUT_ERRORS`)
ends it with one line ``error: <problem>; <fix>`` on stderr and exit status 2, no traceback.
"""
import collections
import contextlib
import faulthandler
import functools
import inspect
import io
import logging
import os
import sys

import torch
import yaml
from detectron2.config import CfgNode, LazyConfig, get_cfg
from detectron2.engine import default_argument_parser, default_setup, launch
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger
from hydra.errors import HydraException
from lip_det import LIPConfigError, add_lip_config, validate_lip_config
from omegaconf import DictConfig, ListConfig, OmegaConf

from .checkpoint import CheckpointError
from .data import DatasetError, check_dataset_files, prepare_datasets
from .data.user_coco import check_num_classes, prepare_user_coco, register_user_coco
from .engine import TRAIN_DEFAULTS, check_lazy_lip_options, config_target, lazy_dataset_names
from .errors import UsageError
from .utils.malloc import keep_freed_memory

__all__ = [
    "UsageError", "INPUT_ERRORS", "reports_input_errors", "is_config_key", "load_config", "check_weights",
    "train_argument_parser", "add_register_coco_argument", "register_user_datasets", "used_datasets",
    "check_train_inputs", "setup", "LAZY_SECTIONS", "is_lazy_config_key", "load_lazy_config",
    "check_lazy_train_inputs", "setup_lazy", "launch_training",
]


INPUT_ERRORS = (UsageError, LIPConfigError, DatasetError, CheckpointError)

LAZY_SECTIONS = ("model", "dataloader", "optimizer", "lr_multiplier", "train")
"""What a LazyConfig needs to train (Detectron2's ``new_baselines`` configs have them all)."""

# How a tool's command line spells the keys its input checks name; ``sep`` joins key and value.
_Keys = collections.namedtuple("_Keys", "weights output_dir device sep")
_YACS_KEYS = _Keys("MODEL.WEIGHTS", "OUTPUT_DIR", "MODEL.DEVICE", " ")
_LAZY_KEYS = _Keys("train.init_checkpoint", "train.output_dir", "train.device", "=")


def reports_input_errors(main):
    """Decorates a tool's ``main``: an :data:`INPUT_ERRORS` exception prints ``error: ...`` as one
    line on stderr and makes ``main`` return 2."""

    @functools.wraps(main)
    def run(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except INPUT_ERRORS as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    return run


def is_config_key(cfg, key):
    """Whether ``key`` (``"MODEL.LIP.STEM"``) names an entry of ``cfg``."""
    node = cfg
    for part in key.split("."):
        if not isinstance(node, CfgNode) or part not in node:
            return False
        node = node[part]
    return True


def load_config(config_file, opts=()):
    """:func:`lip_det.get_lip_cfg` for a command line: a missing file, an unknown key or a value of the
    wrong type is a :class:`UsageError`, a bad ``MODEL.LIP`` value a ``LIPConfigError`` (checked once,
    after the overrides, so a tool stops before it launches anything)."""
    if not config_file or not os.path.isfile(config_file):
        raise UsageError(f"config file not found: {config_file!r}; pass --config-file configs/<name>.yaml")
    cfg = get_cfg()
    add_lip_config(cfg)
    try:
        cfg.merge_from_file(config_file)
    except (KeyError, OSError, yaml.YAMLError) as exc:  # yacs: a key Detectron2 lacks; a missing _BASE_; bad YAML
        raise UsageError(f"{config_file}: {' '.join(str(exc).split())}") from None
    opts = list(opts)
    if len(opts) % 2:
        raise UsageError(f"config overrides come in KEY VALUE pairs; got an odd number of items: {opts}")
    unknown = [key for key in opts[::2] if not is_config_key(cfg, key)]
    if unknown:
        raise UsageError(f"unknown config key {unknown[0]}; keys are Detectron2's (detectron2/config/defaults.py) "
                         "and MODEL.LIP (lip_det/config.py)")
    try:
        cfg.merge_from_list(opts)
    except ValueError as exc:  # yacs: a value whose type differs from the default's
        raise UsageError(f"config override: {exc}") from None
    validate_lip_config(cfg)
    return cfg


def check_weights(cfg):
    """Raises :class:`UsageError` if ``MODEL.WEIGHTS`` names a local file that does not exist."""
    _check_weights_file(cfg.MODEL.WEIGHTS, _YACS_KEYS)


def _check_weights_file(weights, keys):
    if weights and "://" not in weights and not os.path.isfile(weights):
        raise UsageError(
            f"{keys.weights} file not found: {weights}; train one with tools/train_net.py, convert one with "
            f"tools/convert_to_d2.py, or pass {keys.weights}{keys.sep}\"\" to start from random weights"
        )


def train_argument_parser(epilog=None):
    """The command line of ``tools/train_net.py`` (Detectron2's ``default_argument_parser``): the one
    place to add flags that every training tool shares."""
    return add_register_coco_argument(default_argument_parser(epilog))


def add_register_coco_argument(parser):
    """Adds ``--register-coco NAME JSON IMAGE_DIR`` (repeatable) to ``parser``; returns it."""
    parser.add_argument(
        "--register-coco", nargs=3, action="append", default=[], metavar=("NAME", "JSON", "IMAGE_DIR"),
        help="register a COCO instances file as dataset NAME (like register_coco_instances), "
        "so DATASETS.TRAIN / DATASETS.TEST can name it; repeatable",
    )
    return parser


def register_user_datasets(args):
    """Registers the ``--register-coco`` datasets in this process.

    In the launching process (first call) each file is checked and, where needed, repaired in a
    copy (:func:`lip_lab.data.user_coco.prepare_user_coco`); ``args.user_datasets`` keeps the
    result, so worker processes, which receive ``args``, register the same files unchecked.
    """
    if not hasattr(args, "user_datasets"):
        args.user_datasets = [(name, *prepare_user_coco(name, json_file, image_root), image_root)
                              for name, json_file, image_root in args.register_coco]
    for name, json_file, classes, image_root in args.user_datasets:
        register_user_coco(name, json_file, image_root, classes)


def used_datasets(cfg, eval_only=False):
    """The datasets a train / eval run of ``cfg`` loads."""
    return list(cfg.DATASETS.TEST) + ([] if eval_only else list(cfg.DATASETS.TRAIN))


def _check_run(args, weights, output_dir, device, datasets, keys):
    """What every training tool checks before launch; ``keys`` spell the config keys as its command line does."""
    resuming = args.resume and os.path.isfile(os.path.join(output_dir, "last_checkpoint"))
    if args.eval_only and not weights and not resuming:
        raise UsageError(
            f"--eval-only needs trained weights: pass {keys.weights}{keys.sep}<checkpoint.pth>, "
            f"or --resume with a checkpoint in {keys.output_dir} ({output_dir})"
        )
    if not resuming:
        _check_weights_file(weights, keys)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"{keys.device} is 'cuda' but no GPU is visible; add {keys.device}{keys.sep}cpu")
    for name in datasets:
        check_dataset_files(name)


def check_train_inputs(args):
    """Validates a :func:`train_argument_parser` command line before any process starts.

    Returns the config; raises one of :data:`INPUT_ERRORS`. Registers the ``--register-coco``
    datasets and generates no dataset (the tool calls ``lip_lab.data.prepare_datasets`` for that).
    """
    register_user_datasets(args)
    cfg = load_config(args.config_file, args.opts)
    datasets = used_datasets(cfg, args.eval_only)
    _check_run(args, cfg.MODEL.WEIGHTS, cfg.OUTPUT_DIR, cfg.MODEL.DEVICE, datasets, _YACS_KEYS)
    check_num_classes(cfg, datasets)
    return cfg


def _setup_worker(cfg, args, output_dir, device):
    default_setup(cfg, args)
    for name in ("lip_det", "lip_lab"):
        setup_logger(output_dir, distributed_rank=comm.get_rank(), name=name)
    if device == "cpu":
        if keep_freed_memory():
            logging.getLogger("lip_lab").info("CPU training: freed memory is kept for reuse (glibc malloc)")
        if comm.get_local_size() > 1:  # share the cores among processes
            torch.set_num_threads(max(1, torch.get_num_threads() // comm.get_local_size()))


def setup(args):
    """The frozen config of a worker process, with Detectron2's logging and seeding."""
    register_user_datasets(args)
    cfg = load_config(args.config_file, args.opts)
    cfg.freeze()
    _setup_worker(cfg, args, cfg.OUTPUT_DIR, cfg.MODEL.DEVICE)
    return cfg


def is_lazy_config_key(cfg, key):
    """Whether ``key`` (``"model.backbone.bottom_up.stages.depth"``) names an entry of the LazyConfig
    ``cfg``, or an argument that the LazyCall it would go into accepts."""
    parent_key, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key, default=None) if parent_key else cfg
    if isinstance(parent, ListConfig):
        return leaf.isdigit() and int(leaf) < len(parent)
    if not isinstance(parent, DictConfig):
        return False
    if leaf in parent:
        return True
    target = config_target(parent)
    if target is None:
        return False
    params = inspect.signature(target).parameters.values()
    return any(p.kind == p.VAR_KEYWORD or (p.name == leaf and p.kind != p.VAR_POSITIONAL) for p in params)


def load_lazy_config(config_file, opts=()):
    """A LazyConfig (``.py``) with ``key=value`` overrides, for a command line.

    A missing or unloadable file, a file without :data:`LAZY_SECTIONS`, an override that is not
    ``key=value`` or whose key is neither in the config nor an argument of its LazyCall is a
    :class:`UsageError`. ``train`` gets the defaults of :data:`lip_lab.engine.TRAIN_DEFAULTS`.
    """
    if not config_file or not os.path.isfile(config_file):
        raise UsageError(f"config file not found: {config_file!r}; pass --config-file configs/lazy/<name>.py")
    try:
        cfg = LazyConfig.load(config_file)
    except (SyntaxError, ImportError, OSError, yaml.YAMLError) as exc:
        raise UsageError(f"cannot load {config_file}: {type(exc).__name__}: {' '.join(str(exc).split())}") from None
    missing = [name for name in LAZY_SECTIONS if name not in cfg]
    if missing:
        raise UsageError(f"{config_file} has no {', '.join(missing)}: not a LazyConfig training config "
                         "(YACS .yaml configs go to tools/train_net.py)")
    for key, value in TRAIN_DEFAULTS.items():
        cfg.train.setdefault(key, value)
    for override in opts:
        key, sep, _ = override.partition("=")
        if not sep:
            raise UsageError(f"config override {override!r} is not key=value; e.g. train.max_iter=100")
        if not is_lazy_config_key(cfg, key):
            raise UsageError(f"unknown config key {key}; it is neither in {config_file} nor an argument of "
                             "the LazyCall it would go into")
    try:
        return LazyConfig.apply_overrides(cfg, list(opts))
    except (KeyError, HydraException) as exc:
        raise UsageError(f"config override: {' '.join(str(exc).split())}") from None


def check_lazy_train_inputs(args):
    """:func:`check_train_inputs` for a LazyConfig command line (``tools/lazyconfig_train_net.py``); the LIP
    keywords of the model are checked as ``MODEL.LIP`` is (:func:`lip_lab.engine.check_lazy_lip_options`)."""
    register_user_datasets(args)
    cfg = load_lazy_config(args.config_file, args.opts)
    check_lazy_lip_options(cfg)
    train = cfg.train
    datasets = lazy_dataset_names(cfg, args.eval_only)
    _check_run(args, train.init_checkpoint, train.output_dir, train.device, datasets, _LAZY_KEYS)
    if train.device == "cpu" and train.amp.enabled:
        raise UsageError("train.amp.enabled=True needs a GPU (Detectron2's AMPTrainer); add train.amp.enabled=False")
    check_num_classes(cfg, datasets)
    return cfg


def setup_lazy(args):
    """The LazyConfig of a worker process, with Detectron2's logging and seeding."""
    register_user_datasets(args)
    cfg = load_lazy_config(args.config_file, args.opts)
    _setup_worker(cfg, args, cfg.train.output_dir, cfg.train.device)
    return cfg


def launch_training(main, check_inputs, datasets_of, argv=None):
    """A training tool's launcher: parses ``argv`` (:func:`train_argument_parser`), checks it with
    ``check_inputs(args) -> cfg``, generates the built-in datasets ``datasets_of(cfg, eval_only)`` needs,
    then runs ``main(args)`` in every worker (Detectron2's ``launch``). Returns 0. A crash in native
    code prints the Python stack of every thread (``faulthandler``) before the process dies."""
    with contextlib.suppress(io.UnsupportedOperation):  # a stderr without a file (captured) cannot take it
        faulthandler.enable()  # a crash in native code (a segfault) prints where it happened
    args = train_argument_parser().parse_args(argv)
    cfg = check_inputs(args)
    prepare_datasets(datasets_of(cfg, args.eval_only))
    launch(main, args.num_gpus, args.num_machines, args.machine_rank, args.dist_url, args=(args,))
    return 0
