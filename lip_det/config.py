"""``MODEL.LIP``: which downsampling points of a ResNet / DenseNet / FPN use LIP, and how; ``MODEL.DENSENET``."""
from detectron2.config import CfgNode as CN

from .layers import DownsampleSpec, LIPConfigError
from .layers.checks import check_choice

__all__ = ["add_lip_config", "get_lip_cfg", "validate_lip_config", "check_lip_stages", "LIPConfigError"]

LIP_STAGE_NAMES = ("res3", "res4", "res5")


def add_lip_config(cfg):
    """Adds ``cfg.MODEL.LIP`` with the official LIP-ResNet defaults and ``cfg.MODEL.DENSENET``
    (DenseNet-121, read by the DenseNet builders) in place."""
    cfg.MODEL.LIP = CN()
    # Replace the stem's 3x3/2 max-pool by LIP (logit: conv3x3 -> norm -> gate).
    cfg.MODEL.LIP.STEM = True
    # Stages whose first, stride-2 block downsamples with LIP (residual and shortcut); in a
    # DenseNet, stages whose transition (conv1x1, 2x2/2 average pooling) pools with LIP.
    cfg.MODEL.LIP.STAGES = ["res3", "res4", "res5"]
    # Logit module of LIP blocks: "bottleneck" (official shared 1x1-3x3 trunk + 1x1 head
    # per branch) or "projection" (a 1x1 head straight on each branch's input).
    cfg.MODEL.LIP.LOGIT_MODULE = "bottleneck"
    # Width of the shared bottleneck trunk (official: 128).
    cfg.MODEL.LIP.LOGIT_WIDTH = 128
    # Gate coefficient: logits are COEFF * sigmoid(z), in [0, COEFF] (official: 12).
    cfg.MODEL.LIP.COEFF = 12.0
    # Normalisation inside logit modules: "IN" (official, affine InstanceNorm), "GN" or "".
    cfg.MODEL.LIP.LOGIT_NORM = "IN"
    # Also downsample the FPN's extra levels with LIP: P6 from P5 (Faster R-CNN) or
    # P6/P7 (RetinaNet). Off in the paper.
    cfg.MODEL.LIP.FPN_TOP_BLOCK = False
    # lip2d implementation: "auto" (Triton kernels on CUDA, else "fused"), "fused", "triton", "reference" (the formula verbatim, overflows in fp16).
    cfg.MODEL.LIP.IMPL = "auto"
    # Recompute logit modules in backward instead of keeping their activations (same values).
    # None (default): per device. CPU: True; with the official IN logits and the "fused" lip2d
    # each LIP block runs its trunk, heads and both lip2d as one memory-lean autograd node
    # (LIP-R50-FPN's activation memory x1.2 of R50-FPN's instead of x2.3, no cost in time).
    # CUDA: False; the LIP heads run as gated Triton kernels that keep no logits anyway, and
    # recomputing the shared trunk too cut peak memory from x1.46 to x1.32 of R50-FPN's for
    # x1.39 instead of x1.31 of its time on an H200 (docs/results.md).
    # True / False force it; elsewhere (GN logits, autocast on CPU) True checkpoints the logit modules.
    cfg.MODEL.LIP.RECOMPUTE_LOGITS = None
    # The operator at every LIP slot (stem, first block of STAGES, FPN top levels when
    # FPN_TOP_BLOCK): "lip" (learned exp(logit) weights), "softpool" (exp(x) weights),
    # "max", "avg", "min", "sum", "l2", "lp", "stochastic" (Zeiler & Fergus), "s3pool",
    # "blur" (max then binomial blur), and two learned ones, built for each slot's channels C:
    # "spd" (SPD-Conv: space-to-depth C -> 4C, conv3x3 4C -> C) and "haar" (HWD: Haar
    # sub-bands LL/LH/HL/HH, conv1x1 4C -> C), each followed by MODEL.RESNETS.NORM and ReLU in
    # the backbone, a plain conv at the FPN top levels. Only "lip" has logit modules; see docs/pooling.md.
    cfg.MODEL.LIP.POOLING = "lip"
    # p of POOLING "lp": (mean |x|^p)^(1/p) per window; 1 = average, larger tends to max (>= 1).
    cfg.MODEL.LIP.LP_P = 3.0
    # Grid g of POOLING "s3pool": in training each g x g grid keeps g/2 random rows and
    # columns (larger g = more distortion); even, >= 2. Eval subsamples regularly.
    cfg.MODEL.LIP.S3POOL_GRID = 4
    # Binomial filter size of POOLING "blur", 2..7 (3 = [1, 2, 1] x [1, 2, 1] / 16).
    cfg.MODEL.LIP.BLUR_FILTER = 3

    # The DenseNet trunk of build_(lip_)densenet_backbone and its FPN twins; MODEL.BACKBONE.FREEZE_AT
    # freezes its stem and stages as a ResNet's (2: the stem and res2, i.e. dense block 1).
    cfg.MODEL.DENSENET = CN()
    # 121, 161, 169 or 201 (torchvision's DenseNets; the official LIP-DenseNet is 121).
    cfg.MODEL.DENSENET.DEPTH = 121
    # Norm of every dense layer and stage output: "FrozenBN", "BN", "SyncBN", "GN", ... (not "").
    cfg.MODEL.DENSENET.NORM = "FrozenBN"
    # Outputs among "stem" and "res2".."res5" (strides 4, 4, 8, 16, 32): resN is dense block
    # N - 1 after the BN + ReLU that the next layer applies (DenseNet-121: 256, 512, 1024, 1024 channels).
    cfg.MODEL.DENSENET.OUT_FEATURES = ["res2", "res3", "res4", "res5"]


def check_lip_stages(stages, res5_dilation=1, stages_key="lip_stages", dilation_key="res5_dilation"):
    """Raises :class:`LIPConfigError` unless ``stages`` are distinct names among :data:`LIP_STAGE_NAMES`
    and a dilated res5 (``res5_dilation`` 2, stride 1) is not one of them; the keys name the two
    options as their user wrote them."""
    stages = list(stages)
    if any(s not in LIP_STAGE_NAMES for s in stages) or len(set(stages)) != len(stages):
        raise LIPConfigError(
            f"{stages_key} = {stages!r} is not valid; use distinct names among "
            f"{', '.join(map(repr, LIP_STAGE_NAMES))} (res2 does not downsample)"
        )
    if "res5" in stages and res5_dilation != 1:
        raise LIPConfigError(
            f"{stages_key} has 'res5' but {dilation_key} = {res5_dilation} keeps res5 at "
            f"stride 1; drop 'res5' from {stages_key}"
        )


def validate_lip_config(cfg):
    """Checks ``cfg.MODEL.LIP`` where a YACS config enters: raises :class:`LIPConfigError` (one line: key,
    value, what is allowed) on the first bad value. Returns the :class:`~lip_det.layers.DownsampleSpec`
    of the LIP slots, which the backbone builders pass on (they call this once per model)."""
    if "LIP" not in cfg.MODEL:
        raise LIPConfigError(
            "cfg.MODEL.LIP is missing; call lip_det.add_lip_config(cfg) before merging the config"
        )
    lip = cfg.MODEL.LIP
    check_choice("MODEL.LIP.STEM", lip.STEM, (True, False))
    check_choice("MODEL.LIP.FPN_TOP_BLOCK", lip.FPN_TOP_BLOCK, (True, False))
    check_lip_stages(lip.STAGES, cfg.MODEL.RESNETS.RES5_DILATION, "MODEL.LIP.STAGES", "MODEL.RESNETS.RES5_DILATION")
    return DownsampleSpec.from_config(cfg)


def get_lip_cfg(config_file=None, opts=()):
    """Detectron2's default config plus ``MODEL.LIP``, merged with a YAML file and overrides, checked
    (:func:`validate_lip_config`).

    Args:
        config_file: path of a YAML config (``_BASE_`` resolved relative to it), or None.
        opts: ``["KEY", value, ...]`` overrides, as on the command line.
    """
    from detectron2.config import get_cfg

    cfg = get_cfg()
    add_lip_config(cfg)
    if config_file:
        cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    validate_lip_config(cfg)
    return cfg
