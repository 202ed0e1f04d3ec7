"""Weight-name layouts of ResNet checkpoints and their renaming to Detectron2's names.

Three layouts come in: torchvision (``layer1.0.bn1.weight``), the official LIP-ResNet
ImageNet code (torchvision names plus its LIP modules) and Caffe2 / MSRA
(``res2_0_branch2a_w``). All of them are renamed to the names of Detectron2's ResNet
trunk (``stem.conv1.norm.weight``, ``res2.0.conv1.weight``), which are the names of
:func:`build_resnet_backbone` and :func:`build_lip_resnet_backbone` modules.
"""
import re

from detectron2.checkpoint.c2_model_loading import convert_basic_c2_names

from .errors import CheckpointError

__all__ = [
    "TORCHVISION",
    "OFFICIAL_LIP",
    "CAFFE2",
    "DETECTRON2_TRUNK",
    "detect_layout",
    "rename_to_trunk",
    "infer_depth",
]

TORCHVISION = "torchvision ResNet"
OFFICIAL_LIP = "official LIP-ResNet"
CAFFE2 = "Caffe2/MSRA ResNet"
DETECTRON2_TRUNK = "Detectron2 ResNet trunk"

# Module paths (without the parameter name) of torchvision's ResNet -> Detectron2's.
_TORCHVISION_STEM = {"conv1": "stem.conv1", "bn1": "stem.conv1.norm"}
_TORCHVISION_BLOCK = {
    "conv1": "conv1",
    "bn1": "conv1.norm",
    "conv2": "conv2",
    "bn2": "conv2.norm",
    "conv3": "conv3",
    "bn3": "conv3.norm",
    "downsample.0": "shortcut",
    "downsample.1": "shortcut.norm",
}
# The official LIP-ResNet (imagenet/lip_resnet.py) keeps torchvision's names, names its
# shortcut modules, and adds the LIP modules: stem ``maxpool = SimplifiedLIP``; stride-2
# blocks ``bottleneck_shared`` (trunk), ``conv2 = Sequential(BottleneckLIP, conv1x1)`` and
# ``downsample = Sequential(lip=BottleneckLIP, conv, bn)``.
_OFFICIAL_LIP_STEM = {
    **_TORCHVISION_STEM,
    "maxpool.logit.conv": "stem.lip.logit.conv",
    "maxpool.logit.bn": "stem.lip.logit.norm",
}
_OFFICIAL_LIP_BLOCK = {
    **{k: v for k, v in _TORCHVISION_BLOCK.items() if not k.startswith("downsample")},
    "bottleneck_shared.logit.conv1": "logit_trunk.conv1",
    "bottleneck_shared.logit.bn1": "logit_trunk.norm1",
    "bottleneck_shared.logit.conv2": "logit_trunk.conv2",
    "bottleneck_shared.logit.bn2": "logit_trunk.norm2",
    "conv2.0.postprocessing.conv": "lip.logit.conv",
    "conv2.0.postprocessing.bn": "lip.logit.norm",
    "conv2.1": "conv2",
    "downsample.lip.postprocessing.conv": "shortcut_lip.logit.conv",
    "downsample.lip.postprocessing.bn": "shortcut_lip.logit.norm",
    "downsample.conv": "shortcut",
    "downsample.bn": "shortcut.norm",
}
_TABLES = {
    TORCHVISION: (_TORCHVISION_STEM, _TORCHVISION_BLOCK),
    OFFICIAL_LIP: (_OFFICIAL_LIP_STEM, _OFFICIAL_LIP_BLOCK),
}
_BLOCK_PATH = re.compile(r"layer([1-4])\.(\d+)\.(.+)")
_TRUNK_KEY = re.compile(r"(stem|res[2-5])\.")
_CLASSIFIER_MODULES = ("fc", "fc1000")


def _is_dropped(key):
    """ImageNet classifier weights and BN step counters have no place in a detector trunk."""
    return key.split(".")[0] in _CLASSIFIER_MODULES or key.endswith("num_batches_tracked")


def detect_layout(state_dict):
    """Names the layout of a ResNet state dict (one of the layout constants), or None."""
    keys = set(state_dict)
    if any(k.startswith(("maxpool.logit.", "layer2.0.bottleneck_shared.")) for k in keys):
        return OFFICIAL_LIP
    if "layer1.0.conv1.weight" in keys:
        return TORCHVISION
    if "conv1_w" in keys or "res2_0_branch2a_w" in keys:
        return CAFFE2
    if "stem.conv1.weight" in keys:
        return DETECTRON2_TRUNK
    return None


def _rename_key(key, stem_table, block_table):
    module, _, param = key.rpartition(".")
    if module in stem_table:
        return f"{stem_table[module]}.{param}"
    match = _BLOCK_PATH.fullmatch(module)
    if match and match.group(3) in block_table:
        stage, block, path = match.groups()
        return f"res{int(stage) + 1}.{block}.{block_table[path]}.{param}"
    return None


def _new_names(keys, layout):
    """Detectron2 name candidates for ``keys`` (None where the layout has no rule)."""
    if layout == DETECTRON2_TRUNK:
        return list(keys)
    if layout == CAFFE2:
        return convert_basic_c2_names(list(keys))
    if layout in _TABLES:
        return [_rename_key(k, *_TABLES[layout]) for k in keys]
    raise CheckpointError(
        "the file is not a ResNet checkpoint in a known layout (torchvision, official "
        f"LIP-ResNet, Caffe2/MSRA or Detectron2); first keys: {_preview(keys)}"
    )


def rename_to_trunk(state_dict, layout):
    """Renames a ResNet state dict of ``layout`` to Detectron2 trunk names.

    Every tensor maps to exactly one name, except the classifier (``fc``), BN
    ``num_batches_tracked`` counters and Caffe2 ``_momentum`` blobs, which are dropped.

    Returns:
        (dict, list[str]): the renamed state dict and the dropped (original) keys.
    Raises:
        CheckpointError: tensors the layout has no name for (listed in the message).
    """
    keys = list(state_dict)
    renamed, dropped, unmapped = {}, [], []
    for key, new in zip(keys, _new_names(keys, layout)):
        if _is_dropped(key) or (new is not None and _is_dropped(new)) or key.endswith("_momentum"):
            dropped.append(key)
        elif new is None or not _TRUNK_KEY.match(new):
            unmapped.append(key)
        else:
            renamed[new] = state_dict[key]
    if unmapped:
        raise CheckpointError(
            f"{len(unmapped)} tensors of this {layout} checkpoint have no Detectron2 name: "
            f"{_preview(unmapped)}; is it a plain ResNet of that layout?"
        )
    return renamed, dropped


def infer_depth(trunk_state_dict, blocks_per_stage):
    """ResNet depth from the blocks per stage of a trunk state dict (Detectron2 names).

    Args:
        blocks_per_stage: ``{depth: [res2, res3, res4, res5 block counts]}``.
    """
    counts = []
    for stage in range(2, 6):
        blocks = {int(k.split(".")[1]) for k in trunk_state_dict if k.startswith(f"res{stage}.")}
        counts.append(max(blocks) + 1 if blocks else 0)
    bottleneck = "res2.0.conv3.weight" in trunk_state_dict
    for depth, expected in blocks_per_stage.items():
        if counts == list(expected) and bottleneck == (depth >= 50):
            return depth
    raise CheckpointError(
        f"blocks per stage {counts} ({'bottleneck' if bottleneck else 'basic'} blocks) match "
        f"no ResNet depth in {sorted(blocks_per_stage)}: is the file a complete ResNet?"
    )


def _preview(keys, limit=6):
    keys = sorted(keys)
    more = f" ... (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more
