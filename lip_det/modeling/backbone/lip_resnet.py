"""LIP-ResNet for Detectron2: LIP stem and LIP downsampling blocks, Detectron2 names kept.

Every non-LIP weight keeps Detectron2's name and shape (``stem.conv1``, ``resN.M.conv1..3``,
``shortcut``), so MSRA / torchvision ResNet weights load into all of them; LIP adds only
``lip``/``shortcut_lip``/``logit_trunk`` modules. The one exception is ``conv2`` of a LIP
bottleneck, a 1x1 conv where the vanilla block has its strided 3x3 (as in the paper).

``MODEL.LIP.POOLING`` puts another operator into the same slots (``lip``/``shortcut_lip``
keep their names: they are the keys of saved checkpoints and of the official-weight tables):
only the downsampler changes, every conv stays where it is.

The LazyConfig-callable pieces (:class:`LIPStem`, :func:`make_lip_stages`) take the fields of
:class:`~lip_det.layers.DownsampleSpec` as keywords and check them there (:func:`~.slots.downsample_spec`);
:func:`build_lip_resnet_backbone` checks ``MODEL.LIP`` once and hands them the checked spec.
"""
from detectron2.layers import CNNBlockBase, ShapeSpec
from detectron2.modeling.backbone.resnet import (
    BasicBlock,
    BasicStem,
    BottleneckBlock,
    DeformBottleneckBlock,
    ResNet,
)
from torch.nn import functional as F

from ...config import LIP_STAGE_NAMES, check_lip_stages, validate_lip_config
from ...layers import DownsampleSpec
from .registry import register_backbone
from .slots import SlotBlock, conv_norm, downsample_spec

__all__ = [
    "LIPStem",
    "LIPBottleneckBlock",
    "LIPBasicBlock",
    "make_lip_stages",
    "build_lip_resnet_backbone",
]

NUM_BLOCKS_PER_STAGE = {
    18: [2, 2, 2, 2],
    34: [3, 4, 6, 3],
    50: [3, 4, 6, 3],
    101: [3, 4, 23, 3],
    152: [3, 8, 36, 3],
}


class LIPStem(CNNBlockBase):
    """conv7x7/2 -> norm -> ReLU -> LIP (replaces the 3x3/2 max-pool). Stride 4.

    ``downsample`` / ``lip_options``: see :func:`~.slots.downsample_spec`; with ``pooling="max"`` this is
    Detectron2's ``BasicStem`` (its pool still sits in the slot named ``lip``).
    Shapes: (N, in_channels, H, W) -> (N, out_channels, ceil(H/4), ceil(W/4)).
    """

    def __init__(self, in_channels=3, out_channels=64, norm="BN", *, downsample=None, **lip_options):
        super().__init__(in_channels, out_channels, 4)
        self.conv1 = conv_norm(in_channels, out_channels, 7, norm, stride=2)
        self.lip = downsample_spec(downsample, **lip_options).single_pool(out_channels, norm)

    def forward(self, x):
        return self.lip(F.relu_(self.conv1(x)))


class _LIPBlockBase(SlotBlock):
    """A stride-2 block whose convs all run at stride 1: LIP does the downsampling.

    It reports ``stride = 2`` so ResNet's feature strides (and FPN's checks) stay right.
    The residual branch pools with ``self.lip``, the shortcut with ``self.shortcut_lip``;
    both read what the block computes once from its input (:class:`SlotBlock`).
    """

    def __init__(self, in_channels, out_channels, norm, downsample):
        super().__init__(in_channels, out_channels, 2, downsample, in_channels)
        self.shortcut_lip = downsample.branch_pool(in_channels, norm)
        self.shortcut = conv_norm(in_channels, out_channels, 1, norm)

    def _branch(self, x):
        """The residual branch up to its downsampler (full resolution)."""
        raise NotImplementedError

    def _residual(self, pooled):
        """The residual branch after its downsampler."""
        raise NotImplementedError

    def forward(self, x):
        pooled, pooled_x = self._pool((self.lip, self.shortcut_lip), (self._branch(x), x), x)
        return F.relu_(self._residual(pooled) + self.shortcut(pooled_x))


class LIPBottleneckBlock(_LIPBlockBase):
    """The official LIP bottleneck: conv1 1x1 -> LIP -> conv2 **1x1** -> conv3 1x1.

    Shapes: (N, in_channels, H, W) -> (N, out_channels, ceil(H/2), ceil(W/2)).
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        *,
        bottleneck_channels,
        num_groups=1,
        norm="BN",
        downsample=DownsampleSpec(),
    ):
        super().__init__(in_channels, out_channels, norm, downsample)
        self.conv1 = conv_norm(in_channels, bottleneck_channels, 1, norm)
        self.lip = downsample.branch_pool(bottleneck_channels, norm)
        self.conv2 = conv_norm(bottleneck_channels, bottleneck_channels, 1, norm, groups=num_groups)
        self.conv3 = conv_norm(bottleneck_channels, out_channels, 1, norm)

    def _branch(self, x):
        return F.relu_(self.conv1(x))

    def _residual(self, pooled):
        return self.conv3(F.relu_(self.conv2(pooled)))


class LIPBasicBlock(_LIPBlockBase):
    """LIP for ResNet-18/34 (not in the official code): LIP -> conv1 3x3/1 -> conv2 3x3.

    The strided 3x3 ``conv1`` becomes LIP followed by the same 3x3 conv at stride 1, so the
    block keeps the vanilla weight shapes (torchvision / MSRA weights load into every conv)
    and the vanilla compute; logits come from the shared trunk like the bottleneck's.

    Shapes: (N, in_channels, H, W) -> (N, out_channels, ceil(H/2), ceil(W/2)).
    """

    def __init__(self, in_channels, out_channels, *, norm="BN", downsample=DownsampleSpec()):
        super().__init__(in_channels, out_channels, norm, downsample)
        self.lip = downsample.branch_pool(in_channels, norm)
        self.conv1 = conv_norm(in_channels, out_channels, 3, norm)
        self.conv2 = conv_norm(out_channels, out_channels, 3, norm)

    def _branch(self, x):
        return x

    def _residual(self, pooled):
        return self.conv2(F.relu_(self.conv1(pooled)))


def _check_stage_arguments(depth, res2_out_channels):
    if depth not in NUM_BLOCKS_PER_STAGE:
        raise ValueError(f"ResNet depth {depth} is not valid; allowed: {sorted(NUM_BLOCKS_PER_STAGE)}")
    if depth < 50 and res2_out_channels != 64:
        raise ValueError("res2 has 64 output channels in ResNet-18/34 (MODEL.RESNETS.RES2_OUT_CHANNELS)")


def make_lip_stages(
    depth,
    *,
    stride_in_1x1=False,
    norm="BN",
    num_groups=1,
    width_per_group=64,
    in_channels=64,
    res2_out_channels=None,
    res5_dilation=1,
    deform_on_per_stage=(False, False, False, False),
    deform_modulated=False,
    deform_num_groups=1,
    lip_stages=LIP_STAGE_NAMES,
    downsample=None,
    **lip_options,
):
    """The stages res2-res5 of LIP-ResNet-``depth``: the LIP twin of ``ResNet.make_default_stages``.

    The first block of each stage in ``lip_stages`` downsamples with LIP (or the operator
    ``pooling`` names); every other block is Detectron2's. ``build_lip_resnet_backbone`` calls it
    with ``MODEL.RESNETS`` / ``MODEL.LIP``, a LazyConfig with
    ``L(make_lip_stages)(depth=50, stride_in_1x1=True, norm="SyncBN", pooling="lip")``.

    Args:
        depth: 18, 34, 50, 101 or 152.
        stride_in_1x1, norm, num_groups, width_per_group, res5_dilation, deform_*: as the
            ``MODEL.RESNETS`` keys of the same names (``stride_in_1x1`` only for depth >= 50).
        in_channels: the stem's output channels.
        res2_out_channels: res2's output channels (default: 64 for depth < 50, else 256).
        lip_stages: stages whose first, stride-2 block uses LIP (``MODEL.LIP.STAGES``).
        downsample, lip_options: the LIP slots' :class:`~lip_det.layers.DownsampleSpec`, or its fields
            as keywords (``pooling="lip"``, ``logit_module``, ``logit_width``, ``logit_norm``, ``coeff``,
            ``impl``, ``recompute``, ...); see :func:`~.slots.downsample_spec`.
    Returns:
        list[list[CNNBlockBase]]: the ``stages`` argument of Detectron2's ``ResNet``.
    """
    bottleneck = depth >= 50
    out_channels = res2_out_channels or (256 if bottleneck else 64)
    _check_stage_arguments(depth, out_channels)
    downsample = downsample_spec(downsample, **lip_options)
    check_lip_stages(lip_stages, res5_dilation)
    stages = []
    for idx, num_blocks in enumerate(NUM_BLOCKS_PER_STAGE[depth]):
        dilation = res5_dilation if idx == 3 else 1
        if bottleneck:
            lip_kwargs = {"bottleneck_channels": num_groups * width_per_group * 2**idx, "num_groups": num_groups}
            kwargs = {**lip_kwargs, "stride_in_1x1": stride_in_1x1, "dilation": dilation}
            block_class, lip_class = BottleneckBlock, LIPBottleneckBlock
            if deform_on_per_stage[idx]:
                block_class = DeformBottleneckBlock
                kwargs.update(deform_modulated=deform_modulated, deform_num_groups=deform_num_groups)
        else:
            block_class, lip_class, kwargs, lip_kwargs = BasicBlock, LIPBasicBlock, {}, {}
        if f"res{idx + 2}" in lip_stages:
            first = lip_class(in_channels, out_channels, norm=norm, downsample=downsample, **lip_kwargs)
        else:
            stride = 1 if idx == 0 or dilation == 2 else 2
            first = block_class(in_channels, out_channels, stride=stride, norm=norm, **kwargs)
        rest = ResNet.make_stage(
            block_class, num_blocks - 1, in_channels=out_channels, out_channels=out_channels, norm=norm, **kwargs
        )
        stages.append([first] + rest)
        in_channels, out_channels = out_channels, out_channels * 2
    return stages


@register_backbone
def build_lip_resnet_backbone(cfg, input_shape: ShapeSpec):
    """LIP twin of ``build_resnet_backbone``, described by ``MODEL.RESNETS`` and ``MODEL.LIP``.

    Returns:
        ResNet: Detectron2's ResNet with LIP stem / blocks; same outputs, strides and
        channels as :func:`detectron2.modeling.build_resnet_backbone` would give.
    """
    return lip_resnet_from_config(cfg, input_shape, validate_lip_config(cfg))


def lip_resnet_from_config(cfg, input_shape, downsample):
    """:func:`build_lip_resnet_backbone` with ``MODEL.LIP`` already checked into ``downsample``."""
    res, lip = cfg.MODEL.RESNETS, cfg.MODEL.LIP
    if lip.STEM:
        stem = LIPStem(input_shape.channels, res.STEM_OUT_CHANNELS, norm=res.NORM, downsample=downsample)
    else:
        stem = BasicStem(input_shape.channels, res.STEM_OUT_CHANNELS, norm=res.NORM)
    stages = make_lip_stages(
        res.DEPTH,
        stride_in_1x1=res.STRIDE_IN_1X1,
        norm=res.NORM,
        num_groups=res.NUM_GROUPS,
        width_per_group=res.WIDTH_PER_GROUP,
        in_channels=res.STEM_OUT_CHANNELS,
        res2_out_channels=res.RES2_OUT_CHANNELS,
        res5_dilation=res.RES5_DILATION,
        deform_on_per_stage=res.DEFORM_ON_PER_STAGE,
        deform_modulated=res.DEFORM_MODULATED,
        deform_num_groups=res.DEFORM_NUM_GROUPS,
        lip_stages=lip.STAGES,
        downsample=downsample,
    )
    return ResNet(stem, stages, out_features=res.OUT_FEATURES, freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT)
