"""LIP backbones; importing this package registers them in ``BACKBONE_REGISTRY``."""
from .densenet import (
    DenseNet,
    build_densenet_backbone,
    build_lip_densenet_backbone,
    make_densenet_stages,
    make_lip_densenet_stages,
)
from .fpn import (
    LIPLastLevel,
    LIPLastLevelP6P7,
    build_densenet_fpn_backbone,
    build_lip_densenet_fpn_backbone,
    build_lip_resnet_fpn_backbone,
    build_retinanet_densenet_fpn_backbone,
    build_retinanet_lip_densenet_fpn_backbone,
    build_retinanet_lip_resnet_fpn_backbone,
)
from .lip_resnet import (
    LIPBasicBlock,
    LIPBottleneckBlock,
    LIPStem,
    build_lip_resnet_backbone,
    make_lip_stages,
)
from .slots import downsample_spec

LAZY_LIP_TARGETS = (LIPStem, make_lip_stages, make_lip_densenet_stages, LIPLastLevel, LIPLastLevelP6P7)
"""What a LazyConfig calls to build LIP slots: each takes the fields of ``DownsampleSpec`` as keywords."""

__all__ = [k for k in globals().keys() if not k.startswith("_")]
