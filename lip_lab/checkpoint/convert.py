"""Converting ImageNet ResNet / LIP-ResNet checkpoints to Detectron2 trunk checkpoints."""
import os
import pickle
from collections import namedtuple

import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone.resnet import build_resnet_backbone

from lip_det import get_lip_cfg
from lip_det.modeling.backbone import build_lip_resnet_backbone
from ..utils.atomic import atomic_open
from .checkpointer import match_trunk_weights, unwrap_state_dict
from .names import OFFICIAL_LIP, TORCHVISION, CheckpointError, detect_layout, infer_depth, preview, rename_to_trunk
from .safe_load import load_weights_file

__all__ = ["ConversionResult", "convert_to_d2", "save_d2_checkpoint", "TORCHVISION_PREPROCESSING"]

TORCHVISION_PREPROCESSING = {
    "MODEL.PIXEL_MEAN": [123.675, 116.28, 103.53],
    "MODEL.PIXEL_STD": [58.395, 57.12, 57.375],
    "INPUT.FORMAT": "RGB",
    "MODEL.RESNETS.STRIDE_IN_1X1": False,
}
"""The input settings of torchvision and official LIP-ResNet weights: RGB normalised by ImageNet's
mean and std (x255: Detectron2 reads 0-255 pixels), a bottleneck's stride in its 3x3 conv."""

# What a conversion wrote: the file's layout and depth, the number of tensors written, the keys dropped.
ConversionResult = namedtuple("ConversionResult", "source output layout depth num_tensors dropped")


def save_d2_checkpoint(path, state_dict, author):
    """Writes ``{"model", "__author__", "matching_heuristics": True}`` atomically: numpy arrays in a
    ``.pkl`` (Detectron2's model-zoo format), else a ``torch.save`` of tensors. ``matching_heuristics``
    lets a stock ``DetectionCheckpointer`` place the trunk under a detector's ``backbone.bottom_up.``."""
    as_pickle = os.fspath(path).endswith(".pkl")
    model = {k: v.numpy() if as_pickle else v for k, v in state_dict.items()}
    data = {"model": model, "__author__": author, "matching_heuristics": True}
    with atomic_open(path, "wb") as f:
        if as_pickle:
            pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)
        else:
            torch.save(data, f)


def convert_to_d2(source, output):
    """An official LIP-ResNet or a torchvision ResNet ImageNet checkpoint -> a Detectron2 trunk file.

    Every tensor but the classifier and BN step counters is written under its trunk name, and the
    written trunk fills a ``build_lip_resnet_backbone`` (official LIP) or ``build_resnet_backbone``
    (torchvision) of the file's depth exactly; anything else is a one-line :class:`CheckpointError`.
    """
    if not os.path.isfile(source):
        raise CheckpointError(f"weights {source} do not exist")
    state = unwrap_state_dict(load_weights_file(source)["model"])  # weights_only; a .pkl restricted
    layout = detect_layout(state) if isinstance(state, dict) else None
    if layout not in (OFFICIAL_LIP, TORCHVISION):
        raise CheckpointError(
            f"{source} holds {layout or 'no known ResNet'} weights; the converter reads {OFFICIAL_LIP} and "
            f"{TORCHVISION} checkpoints (LIPCheckpointer reads Caffe2 and Detectron2 trunk files directly)"
        )
    depth = infer_depth(rename_to_trunk(state, layout)[0])
    if depth is None:
        raise CheckpointError(f"{source}: its blocks per stage match no ResNet depth; is the file a complete ResNet?")
    opts = ["MODEL.RESNETS.DEPTH", depth, "MODEL.RESNETS.NORM", "FrozenBN", "MODEL.RESNETS.OUT_FEATURES",
            ["res2", "res3", "res4", "res5"], "MODEL.RESNETS.RES2_OUT_CHANNELS", 64 if depth < 50 else 256]
    builder = build_lip_resnet_backbone if layout == OFFICIAL_LIP else build_resnet_backbone
    trunk = builder(get_lip_cfg(None, opts), ShapeSpec(channels=3))  # the FrozenBN trunk to fill exactly
    load = match_trunk_weights(trunk.state_dict(), state, layout, str(source))
    if load.new:
        raise CheckpointError(
            f"{source} lacks {len(load.new)} tensors of a {layout}-{depth}: {preview(load.new, 4)}; "
            "is the file complete?"
        )
    save_d2_checkpoint(output, load.state_dict, f"lip_det: {layout}-{depth} ImageNet weights")
    return ConversionResult(str(source), str(output), layout, depth, len(load.state_dict), load.dropped)
