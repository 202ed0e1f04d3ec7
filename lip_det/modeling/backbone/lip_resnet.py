"""LIP-ResNet for Detectron2: LIP stem and LIP downsampling blocks, Detectron2 names kept.

Every non-LIP weight keeps Detectron2's name and shape (``stem.conv1``, ``resN.M.conv1..3``,
``shortcut``), so MSRA / torchvision ResNet weights load into all of them; LIP adds only
``lip``/``shortcut_lip``/``logit_trunk`` modules. The one exception is ``conv2`` of a LIP
bottleneck, a 1x1 conv where the vanilla block has its strided 3x3 (as in the paper).

``MODEL.LIP.POOLING`` puts another operator into the same slots (``lip``/``shortcut_lip``
keep their names): only the downsampler changes, every conv stays where it is.
"""
import fvcore.nn.weight_init as weight_init
from detectron2.layers import CNNBlockBase, Conv2d, ShapeSpec, get_norm
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone.resnet import (
    BasicBlock,
    BasicStem,
    BottleneckBlock,
    DeformBottleneckBlock,
    ResNet,
)
from torch.nn import functional as F

from ...config import validate_lip_config
from ...layers import DownsampleSpec, lean_lip2d, lean_path_applies, run_logit_module
from .registry import register_backbone

__all__ = [
    "LIPStem",
    "LIPBottleneckBlock",
    "LIPBasicBlock",
    "build_lip_resnet_backbone",
]

NUM_BLOCKS_PER_STAGE = {
    18: [2, 2, 2, 2],
    34: [3, 4, 6, 3],
    50: [3, 4, 6, 3],
    101: [3, 4, 23, 3],
    152: [3, 8, 36, 3],
}


def _conv(in_channels, out_channels, kernel_size, norm, **kwargs):
    conv = Conv2d(
        in_channels,
        out_channels,
        kernel_size=kernel_size,
        padding=kernel_size // 2,
        bias=False,
        norm=get_norm(norm, out_channels),
        **kwargs,
    )
    weight_init.c2_msra_fill(conv)
    return conv


class LIPStem(CNNBlockBase):
    """conv7x7/2 -> norm -> ReLU -> LIP (replaces the 3x3/2 max-pool). Stride 4.

    With ``downsample.pooling == "max"`` this is Detectron2's ``BasicStem``.
    Shapes: (N, in_channels, H, W) -> (N, out_channels, ceil(H/4), ceil(W/4)).
    """

    def __init__(self, in_channels=3, out_channels=64, norm="BN", downsample=DownsampleSpec()):
        super().__init__(in_channels, out_channels, 4)
        self.conv1 = _conv(in_channels, out_channels, 7, norm, stride=2)
        self.lip = downsample.single_pool(out_channels)

    def forward(self, x):
        return self.lip(F.relu_(self.conv1(x)))


class _LIPBlockBase(CNNBlockBase):
    """A stride-2 block whose convs all run at stride 1: LIP does the downsampling.

    It reports ``stride = 2`` so ResNet's feature strides (and FPN's checks) stay right.
    The residual branch pools with ``self.lip``, the shortcut with ``self.shortcut_lip``;
    both read what the block computes once from its input: the features of
    ``self.logit_trunk`` (LIP), the rows and columns of ``self.sampler`` (S3Pool: both
    branches keep the same ones, so their sum stays aligned), or nothing. With
    ``downsample.recompute``, LIP's trunk, heads and both lip2d run as one memory-lean
    autograd node where it applies (:func:`lean_lip2d`).
    """

    def __init__(self, in_channels, out_channels, norm, downsample):
        super().__init__(in_channels, out_channels, stride=2)
        self.logit_trunk = downsample.logit_trunk(in_channels)
        self.sampler = downsample.sampler()
        self.recompute_logits = downsample.recompute
        self.shortcut_lip = downsample.branch_pool(in_channels)
        self.shortcut = _conv(in_channels, out_channels, 1, norm)

    def _shared(self, x):
        if self.logit_trunk is not None:
            return run_logit_module(self.logit_trunk, x, self.recompute_logits)
        if self.sampler is not None:
            return self.sampler(x)
        return None

    def _downsample(self, branch, x):
        """``(self.lip(branch), self.shortcut_lip(x))``, sharing what the block computes once."""
        pools, inputs = (self.lip, self.shortcut_lip), (branch, x)
        if self.recompute_logits and self.logit_trunk is not None and lean_path_applies(pools, inputs, self.logit_trunk):
            return lean_lip2d(pools, inputs, x, self.logit_trunk)
        shared = self._shared(x)
        return self.lip(branch, shared), self.shortcut_lip(x, shared)

    def _branch(self, x):
        """The residual branch up to its downsampler (full resolution)."""
        raise NotImplementedError

    def _residual(self, pooled):
        """The residual branch after its downsampler."""
        raise NotImplementedError

    def forward(self, x):
        pooled, pooled_x = self._downsample(self._branch(x), x)
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
        self.conv1 = _conv(in_channels, bottleneck_channels, 1, norm)
        self.lip = downsample.branch_pool(bottleneck_channels)
        self.conv2 = _conv(bottleneck_channels, bottleneck_channels, 1, norm, groups=num_groups)
        self.conv3 = _conv(bottleneck_channels, out_channels, 1, norm)

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
        self.lip = downsample.branch_pool(in_channels)
        self.conv1 = _conv(in_channels, out_channels, 3, norm)
        self.conv2 = _conv(out_channels, out_channels, 3, norm)

    def _branch(self, x):
        return x

    def _residual(self, pooled):
        return self.conv2(F.relu_(self.conv1(pooled)))


def _stage_blocks(depth, stage_idx, use_lip, in_channels, out_channels, cfg, downsample):
    """Blocks of one stage: an optional LIP first block, then upstream blocks."""
    res = cfg.MODEL.RESNETS
    dilation = res.RES5_DILATION if stage_idx == 5 else 1
    first_stride = 1 if stage_idx == 2 or dilation == 2 else 2
    if depth < 50:
        block_class, kwargs, lip_kwargs = BasicBlock, {"norm": res.NORM}, {}
        lip_class = LIPBasicBlock
    else:
        bottleneck_channels = res.NUM_GROUPS * res.WIDTH_PER_GROUP * 2 ** (stage_idx - 2)
        kwargs = {
            "norm": res.NORM,
            "bottleneck_channels": bottleneck_channels,
            "num_groups": res.NUM_GROUPS,
            "stride_in_1x1": res.STRIDE_IN_1X1,
            "dilation": dilation,
        }
        block_class, lip_class = BottleneckBlock, LIPBottleneckBlock
        lip_kwargs = {"bottleneck_channels": bottleneck_channels, "num_groups": res.NUM_GROUPS}
        if res.DEFORM_ON_PER_STAGE[stage_idx - 2]:
            block_class = DeformBottleneckBlock
            kwargs["deform_modulated"] = res.DEFORM_MODULATED
            kwargs["deform_num_groups"] = res.DEFORM_NUM_GROUPS
    if use_lip:
        first = lip_class(in_channels, out_channels, norm=res.NORM, downsample=downsample, **lip_kwargs)
    else:
        first = block_class(in_channels, out_channels, stride=first_stride, **kwargs)
    num_blocks = NUM_BLOCKS_PER_STAGE[depth][stage_idx - 2]
    rest = ResNet.make_stage(
        block_class, num_blocks - 1, in_channels=out_channels, out_channels=out_channels, **kwargs
    )
    return [first] + rest


@register_backbone
def build_lip_resnet_backbone(cfg, input_shape: ShapeSpec):
    """LIP twin of ``build_resnet_backbone``, described by ``MODEL.RESNETS`` and ``MODEL.LIP``.

    Returns:
        ResNet: Detectron2's ResNet with LIP stem / blocks; same outputs, strides and
        channels as :func:`detectron2.modeling.build_resnet_backbone` would give.
    """
    validate_lip_config(cfg)
    res, lip = cfg.MODEL.RESNETS, cfg.MODEL.LIP
    depth = res.DEPTH
    if depth not in NUM_BLOCKS_PER_STAGE:
        raise ValueError(
            f"MODEL.RESNETS.DEPTH = {depth} is not valid; allowed: {sorted(NUM_BLOCKS_PER_STAGE)}"
        )
    if depth < 50 and res.RES2_OUT_CHANNELS != 64:
        raise ValueError("MODEL.RESNETS.RES2_OUT_CHANNELS must be 64 for ResNet-18/34")
    downsample = DownsampleSpec.from_config(cfg)
    stem_class = LIPStem if lip.STEM else BasicStem
    stem_kwargs = {"downsample": downsample} if lip.STEM else {}
    stem = stem_class(input_shape.channels, res.STEM_OUT_CHANNELS, norm=res.NORM, **stem_kwargs)

    in_channels, out_channels = res.STEM_OUT_CHANNELS, res.RES2_OUT_CHANNELS
    stages = []
    for stage_idx in range(2, 6):
        use_lip = f"res{stage_idx}" in lip.STAGES
        stages.append(
            _stage_blocks(depth, stage_idx, use_lip, in_channels, out_channels, cfg, downsample)
        )
        in_channels, out_channels = out_channels, out_channels * 2
    return ResNet(stem, stages, out_features=res.OUT_FEATURES, freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT)

