"""Converting ImageNet ResNet / LIP-ResNet and DenseNet / LIP-DenseNet checkpoints to Detectron2 trunk checkpoints."""
import os
import pickle
from collections import namedtuple

import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone.resnet import build_resnet_backbone

from lip_det import get_lip_cfg
from lip_det.modeling.backbone import build_densenet_backbone, build_lip_densenet_backbone, build_lip_resnet_backbone
from ..utils.atomic import atomic_open
from .checkpointer import match_trunk_weights, unwrap_state_dict
from .names import (
    DENSENET,
    OFFICIAL_LIP,
    OFFICIAL_LIP_DENSENET,
    RESNET,
    TORCHVISION,
    TORCHVISION_DENSENET,
    CheckpointError,
    detect_layout,
    preview,
    rename_to_trunk,
)
from .safe_load import load_weights_file

__all__ = ["ConversionResult", "convert_to_d2", "save_d2_checkpoint", "IMAGENET_INPUT", "TORCHVISION_PREPROCESSING"]

IMAGENET_INPUT = {
    "MODEL.PIXEL_MEAN": [123.675, 116.28, 103.53],
    "MODEL.PIXEL_STD": [58.395, 57.12, 57.375],
    "INPUT.FORMAT": "RGB",
}
"""The input of torchvision's and the official LIP ImageNet weights: RGB normalised by ImageNet's mean and
std (x255: Detectron2 reads 0-255 pixels)."""

TORCHVISION_PREPROCESSING = {**IMAGENET_INPUT, "MODEL.RESNETS.STRIDE_IN_1X1": False}
"""The settings of torchvision and official LIP-ResNet weights: :data:`IMAGENET_INPUT`, a bottleneck's stride
in its 3x3 conv."""

_STAGES = ["res2", "res3", "res4", "res5"]
_CONVERTIBLE = {  # layout -> the model its weights are, and the builder of its trunk
    TORCHVISION: ("ResNet", build_resnet_backbone),
    OFFICIAL_LIP: ("LIP-ResNet", build_lip_resnet_backbone),
    TORCHVISION_DENSENET: ("DenseNet", build_densenet_backbone),
    OFFICIAL_LIP_DENSENET: ("LIP-DenseNet", build_lip_densenet_backbone),
}


def _trunk_options(architecture, depth):
    """Config options of a FrozenBN trunk of ``architecture`` and ``depth`` with every stage."""
    if architecture is DENSENET:
        return ["MODEL.DENSENET.DEPTH", depth, "MODEL.DENSENET.NORM", "FrozenBN",
                "MODEL.DENSENET.OUT_FEATURES", _STAGES]
    return ["MODEL.RESNETS.DEPTH", depth, "MODEL.RESNETS.NORM", "FrozenBN", "MODEL.RESNETS.OUT_FEATURES", _STAGES,
            "MODEL.RESNETS.RES2_OUT_CHANNELS", 64 if depth < 50 else 256]


# What a conversion wrote: the file's layout, the model and depth its weights are, the number of tensors
# written, the keys dropped, the config settings the weights need.
ConversionResult = namedtuple("ConversionResult", "source output layout model depth num_tensors dropped settings")


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
    """An official LIP-ResNet / LIP-DenseNet or a torchvision ResNet / DenseNet ImageNet checkpoint -> a
    Detectron2 trunk file.

    Every tensor but the classifier and BN step counters is written under its trunk name, and the
    written trunk fills the backbone of the file's model and depth exactly (``build_lip_resnet_backbone``,
    ``build_resnet_backbone``, ``build_lip_densenet_backbone``, ``build_densenet_backbone``); anything
    else is a one-line :class:`CheckpointError`.
    """
    if not os.path.isfile(source):
        raise CheckpointError(f"weights {source} do not exist")
    state = unwrap_state_dict(load_weights_file(source)["model"])  # weights_only; a .pkl restricted
    layout = detect_layout(state) if isinstance(state, dict) else None
    if layout not in _CONVERTIBLE:
        raise CheckpointError(
            f"{source} holds {layout or 'no known ResNet or DenseNet'} weights; the converter reads "
            f"{', '.join(map(str, _CONVERTIBLE))} checkpoints (LIPCheckpointer reads Caffe2 and Detectron2 trunk "
            "files directly)"
        )
    architecture = layout.architecture
    depth = architecture.infer_depth(rename_to_trunk(state, layout)[0])
    if depth is None:
        raise CheckpointError(
            f"{source}: its blocks per stage match no {architecture.name} depth; is the file a complete "
            f"{architecture.name}?"
        )
    model, builder = _CONVERTIBLE[layout]
    trunk = builder(get_lip_cfg(None, _trunk_options(architecture, depth)), ShapeSpec(channels=3))  # to fill exactly
    load = match_trunk_weights(trunk.state_dict(), state, layout, str(source))
    if load.new:
        raise CheckpointError(
            f"{source} lacks {len(load.new)} tensors of a {layout}-{depth}: {preview(load.new, 4)}; "
            "is the file complete?"
        )
    save_d2_checkpoint(output, load.state_dict, f"lip_det: {layout}-{depth} ImageNet weights")
    settings = TORCHVISION_PREPROCESSING if architecture is RESNET else IMAGENET_INPUT
    return ConversionResult(str(source), str(output), layout, f"{model}-{depth}", depth, len(load.state_dict),
                            load.dropped, settings)
