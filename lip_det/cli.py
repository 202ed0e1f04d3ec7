"""What the command-line tools share: config loading, input checks, worker setup, one-line errors.

A tool's ``main`` is wrapped in :func:`reports_input_errors`: bad input (:data:`INPUT_ERRORS`)
ends it with one line ``error: <problem>; <fix>`` on stderr and exit status 2, no traceback.
"""
import functools
import os
import sys

import torch
import yaml
from detectron2.config import CfgNode
from detectron2.engine import default_argument_parser, default_setup
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from .checkpoint import CheckpointError
from .config import LIPConfigError, get_lip_cfg, validate_lip_config
from .data import DatasetError, check_dataset_files
from .data.user_coco import check_num_classes, prepare_user_coco, register_user_coco

__all__ = [
    "UsageError", "INPUT_ERRORS", "reports_input_errors", "is_config_key", "load_config", "check_weights",
    "train_argument_parser", "add_register_coco_argument", "register_user_datasets", "used_datasets",
    "check_train_inputs", "setup",
]


class UsageError(ValueError):
    """A missing file, an unknown config key or contradictory flags; the message names the fix."""


INPUT_ERRORS = (UsageError, LIPConfigError, DatasetError, CheckpointError)


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
    """:func:`get_lip_cfg` for a command line: a missing file, an unknown key or a value of the
    wrong type is a :class:`UsageError`, a bad ``MODEL.LIP`` value a ``LIPConfigError``."""
    if not config_file or not os.path.isfile(config_file):
        raise UsageError(f"config file not found: {config_file!r}; pass --config-file configs/<name>.yaml")
    try:
        cfg = get_lip_cfg(config_file)
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
    weights = cfg.MODEL.WEIGHTS
    if weights and "://" not in weights and not os.path.isfile(weights):
        raise UsageError(
            f"MODEL.WEIGHTS file not found: {weights}; train one with tools/train_net.py, convert one with "
            "tools/convert_to_d2.py, or pass MODEL.WEIGHTS \"\" to start from random weights"
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
    copy (:func:`lip_det.data.user_coco.prepare_user_coco`); ``args.user_datasets`` keeps the
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


def check_train_inputs(args):
    """Validates a :func:`train_argument_parser` command line before any process starts.

    Returns the config; raises one of :data:`INPUT_ERRORS`. Registers the ``--register-coco``
    datasets and generates no dataset (the tool calls ``lip_det.data.prepare_datasets`` for that).
    """
    register_user_datasets(args)
    cfg = load_config(args.config_file, args.opts)
    resuming = args.resume and os.path.isfile(os.path.join(cfg.OUTPUT_DIR, "last_checkpoint"))
    if args.eval_only and not cfg.MODEL.WEIGHTS and not resuming:
        raise UsageError(
            "--eval-only needs trained weights: pass MODEL.WEIGHTS <checkpoint.pth>, "
            f"or --resume with a checkpoint in OUTPUT_DIR ({cfg.OUTPUT_DIR})"
        )
    if not resuming:
        check_weights(cfg)
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("MODEL.DEVICE is 'cuda' but no GPU is visible; add MODEL.DEVICE cpu")
    datasets = used_datasets(cfg, args.eval_only)
    for name in datasets:
        check_dataset_files(name)
    check_num_classes(cfg, datasets)
    return cfg


def setup(args):
    """The frozen config of a worker process, with Detectron2's logging and seeding."""
    register_user_datasets(args)
    cfg = load_config(args.config_file, args.opts)
    cfg.freeze()
    default_setup(cfg, args)
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="lip_det")
    if cfg.MODEL.DEVICE == "cpu" and comm.get_local_size() > 1:  # share the cores among processes
        torch.set_num_threads(max(1, torch.get_num_threads() // comm.get_local_size()))
    return cfg

