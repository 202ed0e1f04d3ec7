"""Exact renaming of torchvision (``layer1.0.bn1.weight``), official LIP-ResNet (the same plus LIP
modules) and Caffe2 / MSRA (``res2_0_branch2a_w``) ResNet weights to the Detectron2 trunk names
(``res2.0.conv1.norm.weight``) of :func:`build_resnet_backbone` and :func:`build_lip_resnet_backbone`."""
import re

from detectron2.checkpoint.c2_model_loading import convert_basic_c2_names

from lip_det.modeling.backbone.lip_resnet import NUM_BLOCKS_PER_STAGE

__all__ = ["CheckpointError", "TORCHVISION", "OFFICIAL_LIP", "CAFFE2", "DETECTRON2_TRUNK", "detect_layout",
           "rename_to_trunk", "infer_depth"]



class CheckpointError(ValueError):
    """A weight file cannot be read or does not fit the model; one line naming the problem and the fix."""


TORCHVISION = "torchvision ResNet"
OFFICIAL_LIP = "official LIP-ResNet"
CAFFE2 = "Caffe2/MSRA ResNet"
DETECTRON2_TRUNK = "Detectron2 ResNet trunk"

# Module paths (without the parameter name) of torchvision's ResNet -> Detectron2's.
_TORCHVISION_STEM = {"conv1": "stem.conv1", "bn1": "stem.conv1.norm"}
_TORCHVISION_BLOCK = {**{f"conv{i}": f"conv{i}" for i in (1, 2, 3)}, **{f"bn{i}": f"conv{i}.norm" for i in (1, 2, 3)},
                      "downsample.0": "shortcut", "downsample.1": "shortcut.norm"}
# The official LIP-ResNet (imagenet/lip_resnet.py) keeps torchvision's names, names its shortcut modules
# and adds LIP modules: stem ``maxpool = SimplifiedLIP``; stride-2 blocks ``bottleneck_shared`` (trunk),
# ``conv2 = Sequential(BottleneckLIP, conv1x1)`` and ``downsample = Sequential(lip=BottleneckLIP, conv, bn)``.
_OFFICIAL_LIP_STEM = {
    **_TORCHVISION_STEM, "maxpool.logit.conv": "stem.lip.logit.conv", "maxpool.logit.bn": "stem.lip.logit.norm"
}
_OFFICIAL_LIP_BLOCK = {
    **{k: v for k, v in _TORCHVISION_BLOCK.items() if not k.startswith("downsample")},
    "bottleneck_shared.logit.conv1": "logit_trunk.conv1", "bottleneck_shared.logit.bn1": "logit_trunk.norm1",
    "bottleneck_shared.logit.conv2": "logit_trunk.conv2", "bottleneck_shared.logit.bn2": "logit_trunk.norm2",
    "conv2.0.postprocessing.conv": "lip.logit.conv", "conv2.0.postprocessing.bn": "lip.logit.norm", "conv2.1": "conv2",
    "downsample.lip.postprocessing.conv": "shortcut_lip.logit.conv",
    "downsample.lip.postprocessing.bn": "shortcut_lip.logit.norm",
    "downsample.conv": "shortcut", "downsample.bn": "shortcut.norm",
}
_TABLES = {
    TORCHVISION: (_TORCHVISION_STEM, _TORCHVISION_BLOCK), OFFICIAL_LIP: (_OFFICIAL_LIP_STEM, _OFFICIAL_LIP_BLOCK)
}
_BLOCK_PATH = re.compile(r"layer([1-4])\.(\d+)\.(.+)")
_TRUNK_KEY = re.compile(r"(stem|res[2-5])\.")


def preview(keys, limit=6):
    """``a, b, c ... (+N more)``: the first ``limit`` of ``keys``, sorted."""
    keys = sorted(keys)
    return ", ".join(keys[:limit]) + (f" ... (+{len(keys) - limit} more)" if len(keys) > limit else "")


def detect_layout(state_dict, author=None):
    """The layout of a ResNet state dict (file ``__author__``: ``author``), or None (e.g. a whole detector)."""
    if author == "Caffe2":
        return CAFFE2
    if any(k.startswith(("maxpool.logit.", "layer2.0.bottleneck_shared.")) for k in state_dict):
        return OFFICIAL_LIP
    for layout, key in ((TORCHVISION, "layer1.0.conv1.weight"), (DETECTRON2_TRUNK, "stem.conv1.weight")):
        if key in state_dict:
            return layout
    return None


def _rename(key, stem_table, block_table):
    module, _, param = key.rpartition(".")
    match = _BLOCK_PATH.fullmatch(module)
    if module in stem_table:
        return f"{stem_table[module]}.{param}"
    if match and match.group(3) in block_table:
        stage, block, path = match.groups()
        return f"res{int(stage) + 1}.{block}.{block_table[path]}.{param}"
    return None


def rename_to_trunk(state_dict, layout):
    """``(renamed state dict, dropped keys)``: ``state_dict`` of ``layout`` under Detectron2 trunk names,
    without what has no place in a trunk (classifier, BN ``num_batches_tracked``, Caffe2 ``_momentum``).
    A tensor the layout has no name for is a :class:`CheckpointError`."""
    keys = list(state_dict)
    if layout in _TABLES:
        names = [_rename(k, *_TABLES[layout]) for k in keys]
    else:
        names = convert_basic_c2_names(keys) if layout == CAFFE2 else keys
    renamed, dropped, unmapped = {}, [], []
    for key, name in zip(keys, names):
        if key.endswith(("num_batches_tracked", "_momentum")) or (name or key).split(".")[0] in ("fc", "fc1000"):
            dropped.append(key)
        elif name is None or not _TRUNK_KEY.match(name):
            unmapped.append(key)
        else:
            renamed[name] = state_dict[key]
    if unmapped:
        raise CheckpointError(f"{len(unmapped)} tensors of this {layout} checkpoint have no Detectron2 name: "
                              f"{preview(unmapped)}; is it a plain ResNet of that layout?")
    return renamed, dropped


def infer_depth(trunk_state_dict):
    """ResNet depth of a trunk state dict (Detectron2 names) from its blocks per stage, or None."""
    counts = [
        1 + max((int(k.split(".")[1]) for k in trunk_state_dict if k.startswith(f"res{stage}.")), default=-1)
        for stage in range(2, 6)
    ]
    bottleneck = "res2.0.conv3.weight" in trunk_state_dict
    return next((d for d, n in NUM_BLOCKS_PER_STAGE.items() if list(n) == counts and bottleneck == (d >= 50)), None)
