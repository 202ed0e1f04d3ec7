"""Command-line setup shared by ``tools/train_net.py`` and the tests."""
import os

import torch
from detectron2.engine import default_setup
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..checkpoint import CheckpointError
from ..config import LIPConfigError, get_lip_cfg
from ..data import DatasetError, prepare_datasets

__all__ = ["UsageError", "INPUT_ERRORS", "setup", "check_inputs"]


class UsageError(ValueError):
    """A missing file or contradictory flags; the message names it and the fix."""


# What a command line can get wrong: reported as one line, without a traceback
# (an unreadable or mismatching MODEL.WEIGHTS file is found when it is loaded).
INPUT_ERRORS = (UsageError, LIPConfigError, DatasetError, CheckpointError)


def _load_cfg(args):
    if not args.config_file or not os.path.isfile(args.config_file):
        raise UsageError(f"config file not found: {args.config_file!r}; pass --config-file configs/<name>.yaml")
    try:
        cfg = get_lip_cfg(args.config_file, args.opts or [])
    except LIPConfigError:
        raise
    except (KeyError, ValueError, AssertionError) as exc:  # yacs: unknown key, odd opts, bad type
        raise UsageError(f"{args.config_file} with overrides {args.opts or []}: {exc}") from exc
    return cfg


def _has_checkpoint(cfg):
    return os.path.isfile(os.path.join(cfg.OUTPUT_DIR, "last_checkpoint"))


def check_inputs(args):
    """Validates the command line before any process starts; generates built-in datasets.

    Returns the config. Raises one of :data:`INPUT_ERRORS`.
    """
    cfg = _load_cfg(args)
    resuming = args.resume and _has_checkpoint(cfg)
    weights = cfg.MODEL.WEIGHTS
    if args.eval_only and not weights and not resuming:
        raise UsageError(
            "--eval-only needs trained weights: pass MODEL.WEIGHTS <checkpoint.pth>, "
            f"or --resume with a checkpoint in OUTPUT_DIR ({cfg.OUTPUT_DIR})"
        )
    if weights and not resuming and "://" not in weights and not os.path.isfile(weights):
        raise UsageError(
            f"MODEL.WEIGHTS file not found: {weights}; give an existing checkpoint, "
            "or MODEL.WEIGHTS \"\" to train from scratch"
        )
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("MODEL.DEVICE is 'cuda' but no GPU is visible; add MODEL.DEVICE cpu")
    datasets = list(cfg.DATASETS.TEST) + ([] if args.eval_only else list(cfg.DATASETS.TRAIN))
    prepare_datasets(datasets)
    return cfg


def setup(args):
    """The frozen config of a worker process, with Detectron2's logging and seeding."""
    cfg = _load_cfg(args)
    cfg.freeze()
    default_setup(cfg, args)
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="lip_det")
    if cfg.MODEL.DEVICE == "cpu" and comm.get_local_size() > 1:  # share the cores among processes
        torch.set_num_threads(max(1, torch.get_num_threads() // comm.get_local_size()))
    return cfg
