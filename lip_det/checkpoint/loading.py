"""Placing ImageNet ResNet weights into a (LIP-)ResNet trunk by exact names.

Detectron2 loads ImageNet weights by suffix-matching heuristics and logs every model
key the file lacks. Here the file's layout is recognised, its names converted exactly
(:mod:`.names`), and each model tensor the file does not provide is either explained
(LIP modules, the 1x1 ``conv2`` of LIP bottlenecks, detector heads) or an error.
"""
import re
from collections import defaultdict
from dataclasses import dataclass, field

from .errors import CheckpointError
from .names import CAFFE2, detect_layout, infer_depth, rename_to_trunk

__all__ = ["TrunkLoad", "match_trunk_weights"]

_TRUNK_ANCHOR = "stem.conv1.weight"
LIP_HEAD = "LIP logit head (zero-init: the LIP starts as 3x3/2 average pooling)"
LIP_TRUNK = "LIP shared logit trunk (MSRA init; no effect while the heads are zero)"
LIP_CONV2 = "1x1 conv2 of a LIP block replaces the strided 3x3 (shape 3x3 -> 1x1), freshly initialised"
LIP_CONV2_NORM = "norm of that new 1x1 conv2 (the 3x3's statistics do not describe it): identity init"
C2_BN_STATS = "BN running stats: Caffe2 AffineChannel has none (identity: mean 0, var 1)"
_LIP_HEAD_KEY = re.compile(r"(stem|res[2-5]\.\d+)\.(lip|shortcut_lip)\.logit\.")
_LIP_TRUNK_KEY = re.compile(r"res[2-5]\.\d+\.logit_trunk\.")
_STAGE_FIRST_CONV2 = re.compile(r"(res[2-5]\.0)\.conv2\.weight")


@dataclass
class TrunkLoad:
    """The outcome of matching a weight file to a model's ResNet trunk.

    ``state_dict`` has the model's full names (``prefix`` + trunk name); ``new`` maps each
    trunk key the file does not provide to the reason; ``outside`` lists the model keys
    outside the trunk (FPN, heads), which keep their initialisation.
    """

    source: str
    layout: str
    prefix: str
    state_dict: dict
    new: dict = field(default_factory=dict)
    dropped: list = field(default_factory=list)
    outside: list = field(default_factory=list)

    def summary(self):
        """A few log lines: what was loaded, what is new and why, what was dropped."""
        where = self.prefix.rstrip(".") or "the trunk"
        lines = [f"Loaded {len(self.state_dict)} tensors of {self.layout} weights {self.source} into {where}."]
        by_reason = defaultdict(list)
        for key, reason in self.new.items():
            module = key.rsplit(".", 1)[0]
            if module not in by_reason[reason]:
                by_reason[reason].append(module)
        for reason, modules in by_reason.items():
            lines.append(f"  new: {reason}: {', '.join(modules)}")
        if self.dropped:
            lines.append(f"  not used from the file: {_count_by_kind(self.dropped)}")
        if self.outside:
            lines.append(f"  not in a backbone file, initialised by the model: {_count_by_module(self.outside)}")
        return "\n".join(lines)


def _count_by_kind(keys):
    counters = sum(k.endswith("num_batches_tracked") for k in keys)
    others = [k for k in keys if not k.endswith("num_batches_tracked")]
    parts = others[:6] + ([f"... (+{len(others) - 6})"] if len(others) > 6 else [])
    return ", ".join(parts + ([f"{counters} BN num_batches_tracked"] if counters else []))


def _count_by_module(keys):
    counts = defaultdict(int)
    for key in keys:
        counts[key.split(".")[0] if not key.startswith("backbone.") else ".".join(key.split(".")[:2])] += 1
    return ", ".join(f"{name} ({n})" for name, n in counts.items())


def _trunk_prefix(model_state):
    prefixes = [k[: -len(_TRUNK_ANCHOR)] for k in model_state if k.endswith(_TRUNK_ANCHOR)]
    prefixes = [p for p in prefixes if p == "" or p.endswith(".")]
    if len(prefixes) != 1:
        raise CheckpointError(
            f"the model has {len(prefixes)} ResNet trunks (keys ending in {_TRUNK_ANCHOR!r}); "
            "ImageNet ResNet weights fit a model with exactly one"
        )
    return prefixes[0]


def _new_key_reason(key, layout):
    """Why a trunk key may legitimately be absent from the file, or None."""
    if _LIP_HEAD_KEY.match(key):
        return LIP_HEAD
    if _LIP_TRUNK_KEY.match(key):
        return LIP_TRUNK
    if layout == CAFFE2 and key.endswith(("norm.running_mean", "norm.running_var")):
        return C2_BN_STATS
    return None


def _is_lip_conv2(key, file_shape, model_shape, model_state, prefix):
    match = _STAGE_FIRST_CONV2.fullmatch(key)
    return (
        match is not None
        and prefix + match.group(1) + ".lip.logit.conv.weight" in model_state
        and tuple(file_shape[2:]) == (3, 3)
        and tuple(model_shape[2:]) == (1, 1)
    )


def _describe_depth(trunk):
    from ..modeling.backbone.lip_resnet import NUM_BLOCKS_PER_STAGE

    try:
        return f"a ResNet-{infer_depth(trunk, NUM_BLOCKS_PER_STAGE)}"
    except CheckpointError:
        return "an incomplete ResNet"


def _preview(items, limit=3):
    more = f" ... (+{len(items) - limit})" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def _reset_norms_of_new_convs(load, model_state):
    """A freshly initialised LIP ``conv2`` keeps its norm at init, not the 3x3's BN values."""
    for key in [k for k, reason in load.new.items() if reason == LIP_CONV2]:
        norm_prefix = load.prefix + key[: -len("weight")] + "norm."
        for full_key in model_state:
            if full_key.startswith(norm_prefix) and not full_key.endswith("num_batches_tracked"):
                load.state_dict.pop(full_key, None)
                load.new[full_key[len(load.prefix):]] = LIP_CONV2_NORM


def match_trunk_weights(model_state, state_dict, source="", author=None):
    """Matches ImageNet weights to the ResNet trunk of a model, exactly.

    Args:
        model_state: the model's ``state_dict()`` (a bare trunk, or a detector whose trunk
            sits under a prefix such as ``backbone.bottom_up.``).
        state_dict: the file's tensors in any layout of :mod:`.names`.
        source: the file's name, for messages.
        author: the file's ``__author__`` ("Caffe2" for MSRA pickles).
    Returns:
        TrunkLoad
    Raises:
        CheckpointError: tensors the model lacks, shapes that differ (other than the LIP
            ``conv2``), or trunk tensors the file lacks that LIP does not explain.
    """
    layout = CAFFE2 if author == "Caffe2" else detect_layout(state_dict)
    trunk, dropped = rename_to_trunk(state_dict, layout)
    prefix = _trunk_prefix(model_state)
    load = TrunkLoad(source, layout, prefix, {}, dropped=dropped)
    unexpected, wrong_shape = [], []
    built_stages = {k[len(prefix):].split(".")[0] for k in model_state if k.startswith(prefix)}
    for key, value in trunk.items():
        target = model_state.get(prefix + key)
        if target is None and key.split(".")[0] not in built_stages:
            load.dropped.append(key)  # a stage this trunk does not build (e.g. res5 of C4 models)
        elif target is None:
            unexpected.append(key)
        elif tuple(value.shape) == tuple(target.shape):
            load.state_dict[prefix + key] = value
        elif _is_lip_conv2(key, value.shape, target.shape, model_state, prefix):
            load.new[key] = LIP_CONV2
        else:
            wrong_shape.append(f"{key} {tuple(value.shape)} vs {tuple(target.shape)}")
    _reset_norms_of_new_convs(load, model_state)
    unexplained = []
    for full_key in model_state:
        if not full_key.startswith(prefix):
            load.outside.append(full_key)
            continue
        key = full_key[len(prefix):]
        if prefix + key in load.state_dict or key in load.new or key.endswith("num_batches_tracked"):
            continue
        reason = _new_key_reason(key, layout)
        if reason is None:
            unexplained.append(key)
        else:
            load.new[key] = reason
    if unexpected or wrong_shape or unexplained:
        problems = [
            f"{len(items)} {what} (e.g. {_preview(items)})"
            for items, what in (
                (unexpected, "tensors the model lacks"),
                (wrong_shape, "tensors with another shape (file vs model)"),
                (unexplained, "model tensors missing from the file"),
            )
            if items
        ]
        raise CheckpointError(
            f"weights {source} ({layout}, {_describe_depth(trunk)}) do not fit this model: "
            f"{'; '.join(problems)}; use weights of the configured architecture or fix "
            "MODEL.RESNETS.DEPTH / MODEL.BACKBONE.NAME"
        )
    return load
