"""FPN on LIP-ResNet and (LIP-)DenseNet, optionally with LIP (or ``MODEL.LIP.POOLING``) downsampling
the top levels of a LIP backbone's FPN."""
import fvcore.nn.weight_init as weight_init
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone.fpn import FPN, LastLevelMaxPool, LastLevelP6P7
from torch import nn
from torch.nn import functional as F

from ...config import validate_lip_config
from .densenet import densenet_from_config
from .lip_resnet import lip_resnet_from_config
from .registry import register_backbone
from .slots import downsample_spec

__all__ = [
    "LIPLastLevel",
    "LIPLastLevelP6P7",
    "build_lip_resnet_fpn_backbone",
    "build_retinanet_lip_resnet_fpn_backbone",
    "build_densenet_fpn_backbone",
    "build_lip_densenet_fpn_backbone",
    "build_retinanet_densenet_fpn_backbone",
    "build_retinanet_lip_densenet_fpn_backbone",
]


class LIPLastLevel(nn.Module):
    """P6 = LIP(P5), replacing Faster R-CNN's stride-2 subsampling of P5 (LIP or the
    operator ``pooling`` names; ``downsample`` / ``lip_options``: see
    :func:`~lip_det.modeling.backbone.slots.downsample_spec`). A learned operator
    (``spd``, ``haar``) is linear here, with neither norm nor activation: P6 is an FPN output.

    Shapes: [(N, C, H, W)] -> [(N, C, ceil(H/2), ceil(W/2))].
    """

    def __init__(self, channels, *, downsample=None, **lip_options):
        super().__init__()
        self.num_levels = 1
        self.in_feature = "p5"
        self.p6_lip = downsample_spec(downsample, **lip_options).single_pool(channels)

    def forward(self, p5):
        return [self.p6_lip(p5)]


class LIPLastLevelP6P7(nn.Module):
    """RetinaNet's P6/P7 with each strided 3x3 conv replaced by a 3x3/1 conv then LIP (or
    the operator ``pooling`` names; ``downsample`` / ``lip_options`` as :class:`LIPLastLevel`'s).

    ``p6``/``p7`` keep the upstream names and shapes, so stock weights still load.
    Shapes: (N, in_channels, H, W) -> [(N, C, H/2, W/2), (N, C, H/4, W/4)] (rounded up).
    """

    def __init__(self, in_channels, out_channels, in_feature="res5", *, downsample=None, **lip_options):
        super().__init__()
        downsample = downsample_spec(downsample, **lip_options)
        self.num_levels = 2
        self.in_feature = in_feature
        self.p6 = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        self.p7 = nn.Conv2d(out_channels, out_channels, 3, 1, 1)
        self.p6_lip = downsample.single_pool(out_channels)
        self.p7_lip = downsample.single_pool(out_channels)
        for conv in (self.p6, self.p7):
            weight_init.c2_xavier_fill(conv)

    def forward(self, c5):
        p6 = self.p6_lip(self.p6(c5))
        p7 = self.p7_lip(self.p7(F.relu(p6)))
        return [p6, p7]


def _fpn(cfg, bottom_up, top_block):
    return FPN(
        bottom_up=bottom_up,
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=top_block,
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )


def fpn_from_config(cfg, bottom_up, downsample=None):
    """P2-P6 on ``bottom_up``; P6 by LIP when ``downsample`` (a LIP backbone's checked ``MODEL.LIP``) is
    given and ``MODEL.LIP.FPN_TOP_BLOCK``, else by Detectron2's stride-2 subsampling."""
    if downsample is not None and cfg.MODEL.LIP.FPN_TOP_BLOCK:
        top_block = LIPLastLevel(cfg.MODEL.FPN.OUT_CHANNELS, downsample=downsample)
    else:
        top_block = LastLevelMaxPool()
    return _fpn(cfg, bottom_up, top_block)


def retinanet_fpn_from_config(cfg, bottom_up, downsample=None):
    """P3-P7 on ``bottom_up`` (P6 from its res5); the top levels as in :func:`fpn_from_config`."""
    in_channels = bottom_up.output_shape()["res5"].channels
    out_channels = cfg.MODEL.FPN.OUT_CHANNELS
    if downsample is not None and cfg.MODEL.LIP.FPN_TOP_BLOCK:
        top_block = LIPLastLevelP6P7(in_channels, out_channels, downsample=downsample)
    else:
        top_block = LastLevelP6P7(in_channels, out_channels)
    return _fpn(cfg, bottom_up, top_block)


@register_backbone
def build_lip_resnet_fpn_backbone(cfg, input_shape: ShapeSpec):
    """LIP twin of ``build_resnet_fpn_backbone`` (P2-P6, for Faster / Mask R-CNN)."""
    downsample = validate_lip_config(cfg)
    return fpn_from_config(cfg, lip_resnet_from_config(cfg, input_shape, downsample), downsample)


@register_backbone
def build_retinanet_lip_resnet_fpn_backbone(cfg, input_shape: ShapeSpec):
    """LIP twin of ``build_retinanet_resnet_fpn_backbone`` (P3-P7, for RetinaNet)."""
    downsample = validate_lip_config(cfg)
    return retinanet_fpn_from_config(cfg, lip_resnet_from_config(cfg, input_shape, downsample), downsample)


@register_backbone
def build_densenet_fpn_backbone(cfg, input_shape: ShapeSpec):
    """FPN (P2-P6) on DenseNet: the vanilla twin of :func:`build_lip_densenet_fpn_backbone`."""
    return fpn_from_config(cfg, densenet_from_config(cfg, input_shape))


@register_backbone
def build_lip_densenet_fpn_backbone(cfg, input_shape: ShapeSpec):
    """FPN (P2-P6, for Faster / Mask R-CNN) on LIP-DenseNet."""
    downsample = validate_lip_config(cfg)
    return fpn_from_config(cfg, densenet_from_config(cfg, input_shape, downsample), downsample)


@register_backbone
def build_retinanet_densenet_fpn_backbone(cfg, input_shape: ShapeSpec):
    """FPN (P3-P7) on DenseNet: the vanilla twin of :func:`build_retinanet_lip_densenet_fpn_backbone`."""
    return retinanet_fpn_from_config(cfg, densenet_from_config(cfg, input_shape))


@register_backbone
def build_retinanet_lip_densenet_fpn_backbone(cfg, input_shape: ShapeSpec):
    """FPN (P3-P7, for RetinaNet) on LIP-DenseNet."""
    downsample = validate_lip_config(cfg)
    return retinanet_fpn_from_config(cfg, densenet_from_config(cfg, input_shape, downsample), downsample)
