"""Exact renaming of ImageNet checkpoints to Detectron2 trunk names, one table per architecture and layout.

ResNet: torchvision (``layer1.0.bn1.weight``), official LIP-ResNet (the same plus LIP modules) and Caffe2 /
MSRA (``res2_0_branch2a_w``) weights to the trunk names (``res2.0.conv1.norm.weight``) of
:func:`build_resnet_backbone` and :func:`build_lip_resnet_backbone`. DenseNet: torchvision
(``features.denseblock1.denselayer1.norm1.weight``) and official LIP-DenseNet (the same plus LIP modules)
weights to those (``res2.0.norm.weight``) of :func:`build_densenet_backbone` and
:func:`build_lip_densenet_backbone`.
"""
import re
from dataclasses import dataclass
from typing import Callable

from detectron2.checkpoint.c2_model_loading import convert_basic_c2_names

from lip_det.modeling.backbone.densenet import DENSENET_ARCHS
from lip_det.modeling.backbone.lip_resnet import NUM_BLOCKS_PER_STAGE

__all__ = ["CheckpointError", "Architecture", "Layout", "RESNET", "DENSENET", "TORCHVISION", "OFFICIAL_LIP", "CAFFE2",
           "DETECTRON2_TRUNK", "TORCHVISION_DENSENET", "OFFICIAL_LIP_DENSENET", "DETECTRON2_DENSENET_TRUNK",
           "detect_layout", "rename_to_trunk"]


class CheckpointError(ValueError):
    """A weight file cannot be read or does not fit the model; one line naming the problem and the fix."""


def _resnet_depth(trunk_state_dict):
    """ResNet depth of a trunk state dict (Detectron2 names) from its blocks per stage, or None."""
    counts = [
        1 + max((int(k.split(".")[1]) for k in trunk_state_dict if k.startswith(f"res{stage}.")), default=-1)
        for stage in range(2, 6)
    ]
    bottleneck = "res2.0.conv3.weight" in trunk_state_dict
    return next((d for d, n in NUM_BLOCKS_PER_STAGE.items() if list(n) == counts and bottleneck == (d >= 50)), None)


def _densenet_depth(trunk_state_dict):
    """DenseNet depth of a trunk state dict (Detectron2 names) from its dense layers per stage, or None."""
    counts = [sum(bool(re.fullmatch(rf"res{stage}\.\d+\.conv2\.weight", k)) for k in trunk_state_dict)
              for stage in range(2, 6)]
    return next((d for d, arch in DENSENET_ARCHS.items() if list(arch.block_layers) == counts), None)


@dataclass(frozen=True)
class Architecture:
    """A backbone family whose ImageNet weights lip_lab reads: its name, the config key of its depth,
    the top-level modules of its classifier in a file, and its depth from a trunk state dict."""

    name: str
    depth_key: str
    classifier: tuple
    infer_depth: Callable


RESNET = Architecture("ResNet", "MODEL.RESNETS.DEPTH", ("fc", "fc1000"), _resnet_depth)
DENSENET = Architecture("DenseNet", "MODEL.DENSENET.DEPTH", ("classifier",), _densenet_depth)


@dataclass(frozen=True)
class Layout:
    """How a weight file names its tensors: ``rename`` maps its keys (a list) to trunk names of its
    ``architecture`` (None where it has none). Reads as its name."""

    name: str
    architecture: Architecture
    rename: Callable

    def __str__(self):
        return self.name


# ResNet. Module paths (without the parameter name) of torchvision's ResNet -> Detectron2's.
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
_BLOCK_PATH = re.compile(r"layer([1-4])\.(\d+)\.(.+)")


def _resnet_renamer(stem_table, block_table):
    def rename_key(key):
        module, _, param = key.rpartition(".")
        match = _BLOCK_PATH.fullmatch(module)
        if module in stem_table:
            return f"{stem_table[module]}.{param}"
        if match and match.group(3) in block_table:
            stage, block, path = match.groups()
            return f"res{int(stage) + 1}.{block}.{block_table[path]}.{param}"
        return None

    return lambda keys: [rename_key(k) for k in keys]


# DenseNet. torchvision's ``features``: conv0, norm0, pool0, then denseblock1, transition1, ..., denseblock4,
# norm5. A dense layer's norm1 / conv1 / norm2 / conv2 (``norm.1`` ... in torchvision's own older files) are
# Detectron2's pre-activation ``norm``, ``conv1`` with its ``norm``, and ``conv2``; stage resN holds
# [transition N - 2 (N > 2),] the layers of dense block N - 1, and the StageNorm closing it: the next
# transition's norm (or norm5). The official LIP-DenseNet (imagenet/lip_densenet.py) keeps these names and
# adds ``pool0 = SimplifiedLIP`` (logit conv1, bn1) and each transition's ``pool = BottleneckLIP`` (logit
# conv1, bn1, conv2, bn2: the trunk; conv3, bn3: the head).
_DENSE_LAYER = re.compile(r"features\.denseblock(\d+)\.denselayer(\d+)\.(norm|conv)\.?([12])")
_TRANSITION = re.compile(r"features\.transition(\d+)\.(.+)")
_DENSE_LAYER_TABLE = {"norm1": "norm", "conv1": "conv1", "norm2": "conv1.norm", "conv2": "conv2"}
_TORCHVISION_DENSENET_STEM = {"features.conv0": "stem.conv1", "features.norm0": "stem.conv1.norm"}
_OFFICIAL_DENSENET_STEM = {
    **_TORCHVISION_DENSENET_STEM,
    "features.pool0.logit.conv1": "stem.lip.logit.conv", "features.pool0.logit.bn1": "stem.lip.logit.norm",
}
_TORCHVISION_TRANSITION = {"conv": "conv"}
_OFFICIAL_TRANSITION = {
    **_TORCHVISION_TRANSITION,
    "pool.logit.conv1": "logit_trunk.conv1", "pool.logit.bn1": "logit_trunk.norm1",
    "pool.logit.conv2": "logit_trunk.conv2", "pool.logit.bn2": "logit_trunk.norm2",
    "pool.logit.conv3": "lip.logit.conv", "pool.logit.bn3": "lip.logit.norm",
}


def _first_dense_layer(block):
    """Index of dense block ``block``'s first layer in its stage: after the transition of res3-res5."""
    return 0 if block == 1 else 1


def _densenet_renamer(stem_table, transition_table):
    def rename(keys):
        layers = {}  # dense block -> its number of layers in the file
        for key in keys:
            match = _DENSE_LAYER.match(key)
            if match:
                block, layer = int(match.group(1)), int(match.group(2))
                layers[block] = max(layers.get(block, 0), layer)

        def stage_norm(block, param):
            return f"res{block + 1}.{_first_dense_layer(block) + layers.get(block, 0)}.norm.{param}"

        def rename_key(key):
            module, _, param = key.rpartition(".")
            if module in stem_table:
                return f"{stem_table[module]}.{param}"
            match = _DENSE_LAYER.fullmatch(module)
            if match:
                block, layer, kind, index = int(match.group(1)), int(match.group(2)), *match.group(3, 4)
                index_in_stage = _first_dense_layer(block) + layer - 1
                return f"res{block + 1}.{index_in_stage}.{_DENSE_LAYER_TABLE[kind + index]}.{param}"
            match = _TRANSITION.fullmatch(module)
            if match and match.group(2) == "norm":
                return stage_norm(int(match.group(1)), param)
            if match and match.group(2) in transition_table:
                return f"res{int(match.group(1)) + 2}.0.{transition_table[match.group(2)]}.{param}"
            if module == "features.norm5" and layers:
                return stage_norm(max(layers), param)
            return None

        return [rename_key(k) for k in keys]

    return rename


def _as_is(keys):
    return list(keys)


TORCHVISION = Layout("torchvision ResNet", RESNET, _resnet_renamer(_TORCHVISION_STEM, _TORCHVISION_BLOCK))
OFFICIAL_LIP = Layout("official LIP-ResNet", RESNET, _resnet_renamer(_OFFICIAL_LIP_STEM, _OFFICIAL_LIP_BLOCK))
CAFFE2 = Layout("Caffe2/MSRA ResNet", RESNET, convert_basic_c2_names)
DETECTRON2_TRUNK = Layout("Detectron2 ResNet trunk", RESNET, _as_is)
TORCHVISION_DENSENET = Layout("torchvision DenseNet", DENSENET,
                              _densenet_renamer(_TORCHVISION_DENSENET_STEM, _TORCHVISION_TRANSITION))
OFFICIAL_LIP_DENSENET = Layout("official LIP-DenseNet", DENSENET,
                               _densenet_renamer(_OFFICIAL_DENSENET_STEM, _OFFICIAL_TRANSITION))
DETECTRON2_DENSENET_TRUNK = Layout("Detectron2 DenseNet trunk", DENSENET, _as_is)
_TRUNK_KEY = re.compile(r"(stem|res[2-5])\.")


def preview(keys, limit=6):
    """``a, b, c ... (+N more)``: the first ``limit`` of ``keys``, sorted."""
    keys = sorted(keys)
    return ", ".join(keys[:limit]) + (f" ... (+{len(keys) - limit} more)" if len(keys) > limit else "")


def detect_layout(state_dict, author=None):
    """The :class:`Layout` of a ResNet or DenseNet state dict (file ``__author__``: ``author``), or None
    (e.g. a whole detector)."""
    if author == "Caffe2":
        return CAFFE2
    official = ((OFFICIAL_LIP, ("maxpool.logit.", "layer2.0.bottleneck_shared.")),
                (OFFICIAL_LIP_DENSENET, ("features.pool0.logit.", "features.transition1.pool.logit.")))
    for layout, prefixes in official:
        if any(k.startswith(prefixes) for k in state_dict):
            return layout
    for layout, key in ((TORCHVISION, "layer1.0.conv1.weight"), (TORCHVISION_DENSENET, "features.conv0.weight"),
                        (DETECTRON2_DENSENET_TRUNK, "res2.0.norm.weight"), (DETECTRON2_TRUNK, "stem.conv1.weight")):
        if key in state_dict:
            return layout
    return None


def rename_to_trunk(state_dict, layout):
    """``(renamed state dict, dropped keys)``: ``state_dict`` of ``layout`` under Detectron2 trunk names,
    without what has no place in a trunk (classifier, BN ``num_batches_tracked``, Caffe2 ``_momentum``).
    A tensor the layout has no name for is a :class:`CheckpointError`."""
    keys = list(state_dict)
    names = layout.rename(keys)
    renamed, dropped, unmapped = {}, [], []
    classifier = layout.architecture.classifier
    for key, name in zip(keys, names):
        if key.endswith(("num_batches_tracked", "_momentum")) or (name or key).split(".")[0] in classifier:
            dropped.append(key)
        elif name is None or not _TRUNK_KEY.match(name):
            unmapped.append(key)
        else:
            renamed[name] = state_dict[key]
    if unmapped:
        raise CheckpointError(f"{len(unmapped)} tensors of this {layout} checkpoint have no Detectron2 name: "
                              f"{preview(unmapped)}; is it a plain {layout.architecture.name} of that layout?")
    return renamed, dropped
