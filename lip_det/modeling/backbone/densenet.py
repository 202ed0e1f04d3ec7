"""DenseNet and LIP-DenseNet (the LIP paper's third model) as Detectron2 backbones.

The network is Detectron2's ``ResNet`` container (stem, stages ``res2``..``res5``, ``freeze_at``,
``out_features``) holding DenseNet stages (Huang et al., CVPR 2017; torchvision's DenseNet-BC), so
what a config says of a ResNet trunk (FPN ``IN_FEATURES``, RetinaNet's res3-res5,
``MODEL.LIP.STAGES``, ``FREEZE_AT``) says the same here. Stage ``resN`` runs at stride 2^N:

=====  ==================================================================  ======  ===============
name   DenseNet-121 layers                                                 stride  channels (121)
=====  ==================================================================  ======  ===============
stem   conv 7x7/2 -> BN -> ReLU -> 3x3/2 pool (``stem.lip``)               4       64
res2   dense block 1 (6 layers) -> BN -> ReLU                              4       256
res3   transition 1 (conv 1x1, 2x2/2 pool ``res3.0.lip``) -> block 2 (12)  8       512
       -> BN -> ReLU
res4   transition 2 -> block 3 (24) -> BN -> ReLU                          16      1024
res5   transition 3 -> block 4 (16) -> BN (``norm5``) -> ReLU              32      1024
=====  ==================================================================  ======  ===============

Each output is what the ImageNet network's next layer reads: BN + ReLU of a dense block, the first
two layers of the transition after it (which keeps its conv and pool), or for res5 the
classifier's input. FPN's lateral convs thus see normalised, rectified features, as on a ResNet.

LIP-DenseNet (official ``imagenet/lip_densenet.py``) puts LIP where DenseNet pools: the stem's
3x3/2 max-pool (logits: conv 3x3 -> IN -> gate, as LIP-ResNet's stem) and the 2x2/2 average pool
of each transition, which pools the transition conv's output with logits from the official
bottleneck module on that output: a logit trunk (conv 1x1 -> IN -> ReLU -> conv 3x3 -> IN -> ReLU)
and a 1x1 head (-> IN -> gate). ``MODEL.LIP.POOLING`` puts another operator into the same slots (2x2/2
windows at the transitions). DenseNet itself is LIP-DenseNet with a max-pooling stem
(``BasicStem``) and average-pooling transitions: :func:`make_densenet_stages`.
"""
from collections import namedtuple

import torch
from detectron2.layers import CNNBlockBase, ShapeSpec, get_norm
from detectron2.modeling.backbone.resnet import BasicStem, ResNet
from torch.nn import functional as F

from ...config import LIP_STAGE_NAMES, check_lip_stages, validate_lip_config
from ...layers import DownsampleSpec, LIPConfigError
from ...layers.checks import check_choice, check_value
from .lip_resnet import LIPStem
from .registry import register_backbone
from .slots import SlotBlock, conv_norm, downsample_spec

__all__ = [
    "DENSENET_ARCHS",
    "DENSENET_OUTPUTS",
    "TRANSITION_WINDOW",
    "DenseLayer",
    "DenseTransition",
    "StageNorm",
    "DenseNet",
    "make_densenet_stages",
    "make_lip_densenet_stages",
    "build_densenet_backbone",
    "build_lip_densenet_backbone",
]

DenseNetArch = namedtuple("DenseNetArch", "stem_channels growth_rate block_layers")
DENSENET_ARCHS = {
    121: DenseNetArch(64, 32, (6, 12, 24, 16)),
    161: DenseNetArch(96, 48, (6, 12, 36, 24)),
    169: DenseNetArch(64, 32, (6, 12, 32, 32)),
    201: DenseNetArch(64, 32, (6, 12, 48, 32)),
}
"""torchvision's DenseNets by depth: stem channels, growth rate, layers of each dense block."""

BOTTLENECK_FACTOR = 4
"""A dense layer's 1x1 conv gives ``BOTTLENECK_FACTOR * growth_rate`` channels (DenseNet-BC)."""

TRANSITION_WINDOW = (2, 2, 0)
"""(kernel, stride, padding) of a transition's pool."""

DENSENET_OUTPUTS = ("stem", "res2", "res3", "res4", "res5")
"""What ``out_features`` can name."""

VANILLA_TRANSITION = DownsampleSpec(pooling="avg")
"""DenseNet's own transition pool: 2x2/2 average pooling."""


class DenseLayer(CNNBlockBase):
    """BN -> ReLU -> conv 1x1 -> BN -> ReLU -> conv 3x3, its ``growth_rate`` new channels appended to the input.

    Shapes: (N, C, H, W) -> (N, C + growth_rate, H, W).
    """

    def __init__(self, in_channels, growth_rate, *, norm="BN"):
        super().__init__(in_channels, in_channels + growth_rate, 1)
        width = BOTTLENECK_FACTOR * growth_rate
        self.norm = get_norm(norm, in_channels)
        self.conv1 = conv_norm(in_channels, width, 1, norm)
        self.conv2 = conv_norm(width, growth_rate, 3, "")

    def forward(self, x):
        new = self.conv2(F.relu_(self.conv1(F.relu_(self.norm(x)))))
        return torch.cat([x, new], 1)


class StageNorm(CNNBlockBase):
    """BN -> ReLU closing a stage: a transition's first two layers, or ``norm5`` and the classifier's ReLU.

    Shapes: (N, C, H, W) -> (N, C, H, W).
    """

    def __init__(self, channels, *, norm="BN"):
        super().__init__(channels, channels, 1)
        self.norm = get_norm(norm, channels)

    def forward(self, x):
        return F.relu_(self.norm(x))


class DenseTransition(SlotBlock):
    """conv 1x1 -> the 2x2/2 pool at the LIP slot ``lip`` (average pooling in DenseNet).

    With LIP, the logits come from the conv's output, the tensor pooled: the logit trunk, then
    the 1x1 head of ``lip`` (official ``BottleneckLIP``). The transition's BN + ReLU closes the
    stage before (:class:`StageNorm`).
    Shapes: (N, in_channels, H, W) -> (N, out_channels, floor(H/2), floor(W/2)).
    """

    def __init__(self, in_channels, out_channels, *, downsample=VANILLA_TRANSITION):
        super().__init__(in_channels, out_channels, 2, downsample, out_channels)
        self.conv = conv_norm(in_channels, out_channels, 1, "")
        self.lip = downsample.branch_pool(out_channels, window=TRANSITION_WINDOW)  # learned ones: linear, as the conv

    def forward(self, x):
        x = self.conv(x)
        return self._pool((self.lip,), (x,), x)[0]


class DenseNet(ResNet):
    """Detectron2's ResNet container holding DenseNet stages (see the module docstring).

    Args: those of ``ResNet``: ``stem`` (``BasicStem`` / :class:`LIPStem` with the depth's stem
    channels), ``stages`` (:func:`make_densenet_stages` / :func:`make_lip_densenet_stages`),
    ``out_features`` (among :data:`DENSENET_OUTPUTS`), ``freeze_at``, ``num_classes`` (a linear
    classifier on the pooled res5: DenseNet's).
    Shapes: (N, C, H, W) -> {"res2": (N, C_2, H/4, W/4), ..., "res5": (N, C_5, H/32, W/32)}.
    """


def _arch(depth):
    if depth not in DENSENET_ARCHS:
        raise ValueError(f"DenseNet depth {depth} is not valid; allowed: {sorted(DENSENET_ARCHS)}")
    return DENSENET_ARCHS[depth]


def make_lip_densenet_stages(depth=121, *, norm="BN", lip_stages=LIP_STAGE_NAMES, downsample=None, **lip_options):
    """The stages res2-res5 of LIP-DenseNet-``depth``: the ``stages`` argument of :class:`DenseNet`.

    The transition starting each stage in ``lip_stages`` pools with LIP (or the operator ``pooling``
    names); the others average-pool, as DenseNet. ``build_lip_densenet_backbone`` calls it with
    ``MODEL.DENSENET`` / ``MODEL.LIP``, a LazyConfig with
    ``L(make_lip_densenet_stages)(depth=121, norm="FrozenBN", pooling="lip")``.

    Args:
        depth: 121, 161, 169 or 201.
        norm: the norm of every dense layer and stage output (``MODEL.DENSENET.NORM``).
        lip_stages: stages whose transition uses LIP (``MODEL.LIP.STAGES``; res2 has none).
        downsample, lip_options: the LIP slots' :class:`~lip_det.layers.DownsampleSpec`, or its fields
            as keywords; see :func:`~.slots.downsample_spec`.
    Returns:
        list[list[CNNBlockBase]]: per stage, [transition (res3-res5),] dense layers, :class:`StageNorm`.
    """
    arch = _arch(depth)
    downsample = downsample_spec(downsample, **lip_options)
    check_lip_stages(lip_stages)
    channels, stages = arch.stem_channels, []
    for idx, num_layers in enumerate(arch.block_layers):
        blocks = []
        if idx > 0:
            spec = downsample if f"res{idx + 2}" in lip_stages else VANILLA_TRANSITION
            blocks.append(DenseTransition(channels, channels // 2, downsample=spec))
            channels //= 2
        for _ in range(num_layers):
            blocks.append(DenseLayer(channels, arch.growth_rate, norm=norm))
            channels += arch.growth_rate
        stages.append(blocks + [StageNorm(channels, norm=norm)])
    return stages


def make_densenet_stages(depth=121, *, norm="BN"):
    """The stages res2-res5 of DenseNet-``depth`` (torchvision's): LIP-DenseNet's without LIP."""
    return make_lip_densenet_stages(depth, norm=norm, lip_stages=())


def check_densenet_config(cfg):
    """Raises :class:`LIPConfigError` (one line: key, value, what is allowed) on the first bad
    ``MODEL.DENSENET`` value."""
    if "DENSENET" not in cfg.MODEL:
        raise LIPConfigError(
            "cfg.MODEL.DENSENET is missing; call lip_det.add_lip_config(cfg) before merging the config"
        )
    dense = cfg.MODEL.DENSENET
    check_choice("MODEL.DENSENET.DEPTH", dense.DEPTH, tuple(DENSENET_ARCHS))
    check_value("MODEL.DENSENET.NORM", dense.NORM, bool(dense.NORM),
                "every dense layer normalises its input: use e.g. 'FrozenBN', 'BN', 'SyncBN' or 'GN'")
    outputs = list(dense.OUT_FEATURES)
    check_value("MODEL.DENSENET.OUT_FEATURES", outputs, outputs and set(outputs) <= set(DENSENET_OUTPUTS),
                f"use names among {', '.join(map(repr, DENSENET_OUTPUTS))}")


def densenet_from_config(cfg, input_shape, downsample=None):
    """DenseNet of ``MODEL.DENSENET``; with ``downsample`` (``MODEL.LIP`` checked into a spec) LIP-DenseNet,
    LIP at the stem if ``MODEL.LIP.STEM`` and at the transitions into ``MODEL.LIP.STAGES``."""
    check_densenet_config(cfg)
    dense = cfg.MODEL.DENSENET
    stem_channels = DENSENET_ARCHS[dense.DEPTH].stem_channels
    if downsample is not None and cfg.MODEL.LIP.STEM:
        stem = LIPStem(input_shape.channels, stem_channels, norm=dense.NORM, downsample=downsample)
    else:
        stem = BasicStem(input_shape.channels, stem_channels, norm=dense.NORM)
    if downsample is None:
        stages = make_densenet_stages(dense.DEPTH, norm=dense.NORM)
    else:
        stages = make_lip_densenet_stages(dense.DEPTH, norm=dense.NORM, lip_stages=cfg.MODEL.LIP.STAGES,
                                          downsample=downsample)
    return DenseNet(stem, stages, out_features=dense.OUT_FEATURES, freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT)


@register_backbone
def build_densenet_backbone(cfg, input_shape: ShapeSpec):
    """DenseNet (torchvision's) described by ``MODEL.DENSENET``: the vanilla twin of
    :func:`build_lip_densenet_backbone`, with the same outputs, strides and channels."""
    return densenet_from_config(cfg, input_shape)


@register_backbone
def build_lip_densenet_backbone(cfg, input_shape: ShapeSpec):
    """LIP-DenseNet described by ``MODEL.DENSENET`` and ``MODEL.LIP``."""
    return densenet_from_config(cfg, input_shape, validate_lip_config(cfg))
