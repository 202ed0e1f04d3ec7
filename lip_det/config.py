"""``MODEL.LIP``: which downsampling points of a ResNet / FPN use LIP, and how."""
from detectron2.config import CfgNode as CN

from .layers import LIP_IMPLS, LOGIT_MODULES, LOGIT_NORMS

__all__ = ["add_lip_config", "get_lip_cfg", "validate_lip_config", "LIPConfigError"]

LIP_STAGE_NAMES = ("res3", "res4", "res5")


class LIPConfigError(ValueError):
    """A ``MODEL.LIP`` value is out of range; the message names the key and the fix."""


def add_lip_config(cfg):
    """Adds ``cfg.MODEL.LIP`` with the official LIP-ResNet defaults (in place)."""
    cfg.MODEL.LIP = CN()
    # Replace the stem's 3x3/2 max-pool by LIP (logit: conv3x3 -> norm -> gate).
    cfg.MODEL.LIP.STEM = True
    # Stages whose first, stride-2 block downsamples with LIP (residual and shortcut).
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
    # Recompute logit modules in backward instead of keeping their activations: same
    # values, LIP's extra activation memory drops to about a third, one more logit forward.
    cfg.MODEL.LIP.RECOMPUTE_LOGITS = False


def _check_choice(key, value, allowed):
    if value not in allowed:
        raise LIPConfigError(
            f"{key} = {value!r} is not valid; allowed values: {', '.join(map(repr, allowed))}"
        )


def validate_lip_config(cfg):
    """Raises :class:`LIPConfigError` (one line: key, value, what is allowed) on bad values."""
    if "LIP" not in cfg.MODEL:
        raise LIPConfigError(
            "cfg.MODEL.LIP is missing; call lip_det.add_lip_config(cfg) before merging the config"
        )
    lip = cfg.MODEL.LIP
    _check_choice("MODEL.LIP.STEM", lip.STEM, (True, False))
    _check_choice("MODEL.LIP.LOGIT_MODULE", lip.LOGIT_MODULE, LOGIT_MODULES)
    _check_choice("MODEL.LIP.LOGIT_NORM", lip.LOGIT_NORM, LOGIT_NORMS)
    _check_choice("MODEL.LIP.FPN_TOP_BLOCK", lip.FPN_TOP_BLOCK, (True, False))
    _check_choice("MODEL.LIP.IMPL", lip.IMPL, LIP_IMPLS)
    _check_choice("MODEL.LIP.RECOMPUTE_LOGITS", lip.RECOMPUTE_LOGITS, (True, False))
    stages = list(lip.STAGES)
    bad = [s for s in stages if s not in LIP_STAGE_NAMES] or (len(set(stages)) != len(stages))
    if bad:
        raise LIPConfigError(
            f"MODEL.LIP.STAGES = {stages!r} is not valid; use distinct names among "
            f"{', '.join(map(repr, LIP_STAGE_NAMES))} (res2 does not downsample)"
        )
    if isinstance(lip.LOGIT_WIDTH, bool) or not isinstance(lip.LOGIT_WIDTH, int) or lip.LOGIT_WIDTH < 1:
        raise LIPConfigError(
            f"MODEL.LIP.LOGIT_WIDTH = {lip.LOGIT_WIDTH!r} is not valid; use a positive integer (official: 128)"
        )
    if lip.LOGIT_NORM == "GN" and lip.LOGIT_WIDTH % 32:
        raise LIPConfigError(
            f"MODEL.LIP.LOGIT_WIDTH = {lip.LOGIT_WIDTH} does not divide into 32 groups for "
            "MODEL.LIP.LOGIT_NORM = 'GN'; use a multiple of 32"
        )
    if isinstance(lip.COEFF, bool) or not isinstance(lip.COEFF, (int, float)) or not 0 < lip.COEFF <= 30:
        raise LIPConfigError(
            f"MODEL.LIP.COEFF = {lip.COEFF!r} is not valid; use a number in (0, 30] (official: 12)"
        )
    if "res5" in stages and cfg.MODEL.RESNETS.RES5_DILATION != 1:
        raise LIPConfigError(
            "MODEL.LIP.STAGES has 'res5' but MODEL.RESNETS.RES5_DILATION = 2 keeps res5 at "
            "stride 1; drop 'res5' from MODEL.LIP.STAGES"
        )


def get_lip_cfg(config_file=None, opts=()):
    """Detectron2's default config plus ``MODEL.LIP``, merged with a YAML file and overrides.

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
