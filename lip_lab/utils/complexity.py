"""Parameter and FLOP counts of backbones, side by side."""
import logging

import torch
from detectron2.modeling import build_backbone
from fvcore.nn import FlopCountAnalysis

__all__ = ["count_parameters", "count_gflops", "backbone_complexity"]


def count_parameters(module):
    """Number of parameters (trainable or not; buffers such as FrozenBN stats excluded)."""
    return sum(p.numel() for p in module.parameters())


def count_gflops(module, inputs):
    """fvcore GFLOPs (one multiply-add = one FLOP; convs, matmuls and norms) of ``module(inputs)``."""
    analysis = FlopCountAnalysis(module, inputs)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    logging.getLogger("fvcore.nn.jit_analysis").setLevel(logging.ERROR)
    return analysis.total() / 1e9


def backbone_complexity(cfg, image_size=224):
    """Params and GFLOPs of the ResNet or DenseNet trunk ``cfg`` builds (all stages trainable, BN as params).

    Returns:
        dict(params=int, gflops=float) for one ``image_size`` x ``image_size`` RGB image.
    """
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    for trunk in (cfg.MODEL.RESNETS, cfg.MODEL.DENSENET):  # whichever the builder reads
        trunk.NORM = "BN"
        trunk.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    model = build_backbone(cfg).eval()
    with torch.no_grad():
        gflops = count_gflops(model, torch.zeros(1, 3, image_size, image_size))
    return {"params": count_parameters(model), "gflops": gflops}
