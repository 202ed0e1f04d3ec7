"""``LIPCheckpointer``: Detectron2's checkpointer with atomic saves and exact ImageNet warm starts."""
import contextlib
import pickle
import re
from dataclasses import dataclass, field

from detectron2.checkpoint import DetectionCheckpointer

from ..utils.atomic import atomic_open
from .names import CAFFE2, CheckpointError, detect_layout, preview, rename_to_trunk
from .safe_load import load_weights_file

__all__ = ["LIPCheckpointer", "AtomicWrites", "TrunkLoad", "match_trunk_weights", "readable", "unwrap_state_dict"]

# What a vanilla trunk's file provides: the stem conv, a ResNet block's convs and shortcut, a DenseNet
# layer's / transition's convs and norms (LIP modules, and what Caffe2 files lack, may start new).
_VANILLA_KEY = re.compile(r"(stem\.conv1|res[2-5]\.\d+\.(conv[1-3]?|shortcut|norm))\.")


@contextlib.contextmanager
def readable(path):
    """Turns what reading a truncated or foreign weight file raises (torch's zip reader, pickle, a file
    cut short, objects ``torch.load(weights_only=True)`` refuses) into a one-line :class:`CheckpointError`."""
    try:
        yield
    except (RuntimeError, pickle.UnpicklingError, EOFError) as exc:
        reason = " ".join(str(exc).split()).split(". ")[0][:160] or type(exc).__name__
        raise CheckpointError(
            f"cannot read weights {path} ({reason}): a truncated download, not a .pth/.pkl checkpoint, "
            "or pickled objects other than tensors; re-download or re-convert it"
        ) from exc


def unwrap_state_dict(obj):
    """The ``{name: tensor}`` dict of a checkpoint: unwraps ``{'model': ...}`` and ``{'state_dict': ...}``
    (PyTorch's ImageNet example, the official LIP code) and strips DataParallel's ``module.``."""
    for key in ("model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if isinstance(obj, dict) and obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


@dataclass
class TrunkLoad:
    """Weights matched to a model's trunk: ``state_dict`` under the model's names (``prefix`` +
    trunk name), ``new``: the trunk keys the file does not provide, ``dropped``: file keys not used."""

    source: str
    layout: str
    prefix: str
    state_dict: dict = field(default_factory=dict)
    new: list = field(default_factory=list)
    dropped: list = field(default_factory=list)

    def summary(self):
        new_modules = ", ".join(dict.fromkeys(k.rsplit(".", 1)[0] for k in self.new)) or "none"
        new_conv2 = any(re.match(r"res\d\.\d+\.conv2\.", k) for k in self.new)
        conv2 = "; a LIP block's 1x1 conv2 replaces a strided 3x3" if new_conv2 else ""
        return (
            f"Loaded {len(self.state_dict)} tensors of {self.layout} weights {self.source} into "
            f"{self.prefix.rstrip('.') or 'the trunk'}; the rest of the model keeps its initialisation.\n"
            f"  new (LIP starts as average pooling{conv2}): "
            f"{new_modules}\n  not used from the file (but BN step counters): "
            f"{preview([k for k in self.dropped if not k.endswith('num_batches_tracked')]) or 'none'}"
        )


def match_trunk_weights(model_state, state_dict, layout, source):
    """Matches ResNet or DenseNet weights of ``layout`` to the one trunk in ``model_state``, exactly: each
    trunk tensor comes from the file or is one LIP adds (LIP modules; a LIP-ResNet block's 1x1 ``conv2``
    and its norm where the file has a 3x3; BN stats a Caffe2 file lacks). Stages the model does not build
    (res5 of C4 models) are dropped; anything else is a one-line :class:`CheckpointError`."""
    trunk, dropped = rename_to_trunk(state_dict, layout)
    prefixes = [k[: -len("stem.conv1.weight")] for k in model_state if re.search(r"(^|\.)stem\.conv1\.weight$", k)]
    if len(prefixes) != 1:
        raise CheckpointError(
            f"the model has {len(prefixes)} ResNet / DenseNet trunks; ImageNet weights fit exactly one"
        )
    load, misfits = TrunkLoad(source, layout, prefixes[0], dropped=dropped), []
    model = {k[len(load.prefix):]: tuple(v.shape) for k, v in model_state.items()
             if k.startswith(load.prefix) and not k.endswith("num_batches_tracked")}
    lip_blocks = {k.split(".lip.")[0] for k in model if re.match(r"res\d\.\d+\.lip\.", k)}
    replaced = tuple(  # LIP blocks whose 1x1 conv2 stands where the file has a 3x3
        f"{b}.conv2." for b in lip_blocks
        if f"{b}.conv2.weight" in trunk and tuple(trunk[f"{b}.conv2.weight"].shape) != model[f"{b}.conv2.weight"]
    )
    stages = {k.split(".")[0] for k in model}
    for key, value in trunk.items():
        if key.split(".")[0] not in stages or key.startswith(replaced):
            load.dropped.append(key)
        elif tuple(value.shape) == model.get(key):
            load.state_dict[load.prefix + key] = value
        else:
            misfits.append(f"{key} {tuple(value.shape)} vs {model.get(key, 'none')}")
    load.new = sorted(model.keys() - {k[len(load.prefix):] for k in load.state_dict})
    missing = [k for k in load.new if _VANILLA_KEY.match(k) and k not in trunk and not k.startswith(replaced)
               and not (layout == CAFFE2 and k.endswith((".running_mean", ".running_var")))]
    problems = [f"{len(keys)} {what} (e.g. {preview(keys, 3)})" for keys, what in (
        (misfits, "file tensors fit no model tensor (name, shape)"), (missing, "model tensors missing from the file"),
    ) if keys]
    if problems:
        arch = layout.architecture
        raise CheckpointError(
            f"weights {source} ({layout}, {arch.name}-{arch.infer_depth(trunk) or '?'}) do not fit this model: "
            f"{'; '.join(problems)}; use weights of the configured architecture or fix {arch.depth_key} / "
            "MODEL.BACKBONE.NAME"
        )
    return load


class AtomicWrites:
    """A checkpointer's ``path_manager`` (Detectron2's :class:`PathManager` by default) whose files opened
    for writing appear complete under their name or not at all (:func:`atomic_open`; local paths)."""

    def __init__(self, path_manager):
        self._path_manager = path_manager

    def open(self, path, mode="r", **kwargs):
        if "w" in mode:
            return atomic_open(path, mode, **kwargs)
        return self._path_manager.open(path, mode, **kwargs)

    def __getattr__(self, name):
        return getattr(self._path_manager, name)


def check_detector_fit(incompatible, source):
    """Raises :class:`CheckpointError` when a detector checkpoint left model tensors missing or misshapen
    (``incompatible``: fvcore's ``_IncompatibleKeys``)."""
    problems = [f"{len(keys)} {what} (e.g. {preview(keys, 3)})" for keys, what in (
        ([f"{k} {tuple(have)} vs {tuple(want)}" for k, have, want in incompatible.incorrect_shapes],
         "file tensors of another shape (name, file vs model)"),
        (incompatible.missing_keys, "model tensors missing from the file"),
    ) if keys]
    if problems:
        raise CheckpointError(f"weights {source} do not fit this model: {'; '.join(problems)}; use the config "
                              "these weights were trained with")


class LIPCheckpointer(DetectionCheckpointer):
    """A :class:`DetectionCheckpointer` whose saves are atomic (a kill mid-save leaves the previous checkpoint
    and ``last_checkpoint`` to resume from; ``save_dir`` is local) and which loads ResNet and DenseNet weights
    (official LIP-ResNet / LIP-DenseNet, torchvision, MSRA, converted) into the trunk by exact names, logging
    what starts new (kept in ``trunk_load``, None after a detector checkpoint). Files load without running code
    from them (:func:`~lip_lab.checkpoint.safe_load.load_weights_file`: ``.pkl`` with a restricted unpickler,
    ``.pth`` with ``torch.load(weights_only=True)``). Unreadable files (truncated; objects either refuses; not a dict
    of weights) and weights that do not fit are a one-line :class:`CheckpointError`. With ``strict``, so are
    detector checkpoints that leave model tensors missing or misshapen (inference and export must not run
    half-initialised models; training may, to fine-tune into new heads).
    """

    def __init__(self, model, save_dir="", *, strict=False, **kwargs):
        super().__init__(model, save_dir, **kwargs)
        self.path_manager = AtomicWrites(self.path_manager)  # save() and tag_last_checkpoint() write through it
        self.trunk_load = None
        self.strict = strict

    # _load_file and _load_model are fvcore's hooks for other file formats and weight layouts (Detectron2's
    # checkpointer overrides the same two for Caffe2 and model-zoo files).
    def _load_file(self, filename):
        self._source = filename
        if filename.endswith((".pkl", ".pyth")):  # Detectron2 would unpickle these unrestricted
            return load_weights_file(filename)
        with readable(filename):
            return super()._load_file(filename)  # URL queries as Detectron2 reads them; the file via _torch_load

    def _torch_load(self, f):
        return load_weights_file(f)  # torch.load(weights_only=True), even under TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD

    def _load_model(self, checkpoint):
        state = unwrap_state_dict(checkpoint["model"])
        layout = detect_layout(state, checkpoint.get("__author__"))
        self.trunk_load = None
        if layout is None:  # a detector checkpoint
            incompatible = super()._load_model(checkpoint)
            if self.strict:
                check_detector_fit(incompatible, self._source)
            return incompatible
        self.trunk_load = match_trunk_weights(self.model.state_dict(), state, layout, self._source)
        self.logger.info(self.trunk_load.summary())
        checkpoint.update(model=self.trunk_load.state_dict, matching_heuristics=False)
        super()._load_model(checkpoint)
        return None  # the summary above replaces Detectron2's list of missing keys
