"""lip_det: LIP (Local Importance-based Pooling, ICCV 2019) backbones for Detectron2.

``import lip_det`` registers the LIP backbone builders in Detectron2's ``BACKBONE_REGISTRY`` and
nothing else; ``add_lip_config(cfg)`` adds ``MODEL.LIP`` to a Detectron2 config. The training and
evaluation tools, datasets and converters are the lab beside it, ``lip_lab``.
"""
from . import modeling as _  # noqa: F401  (registration)
from .config import add_lip_config, get_lip_cfg, validate_lip_config
from .layers import LIPConfigError

__version__ = "0.1.0"
__all__ = ["add_lip_config", "get_lip_cfg", "validate_lip_config", "LIPConfigError"]
