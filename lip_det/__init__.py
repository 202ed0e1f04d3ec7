"""lip_det: LIP (Local Importance-based Pooling, ICCV 2019) backbones for Detectron2.

``import lip_det`` registers the LIP backbone builders; ``add_lip_config(cfg)`` adds
``MODEL.LIP`` to a Detectron2 config.
"""
from . import data as _data  # noqa: F401  (registration: built-in datasets)
from . import modeling as _  # noqa: F401  (registration)
from .config import LIPConfigError, add_lip_config, get_lip_cfg, validate_lip_config

__version__ = "0.1.0"
__all__ = ["add_lip_config", "get_lip_cfg", "validate_lip_config", "LIPConfigError"]
