"""Reading ResNet weight files (.pth / .pkl, wrapped or not) and writing Detectron2 ones."""
import os
import pickle

import numpy as np
import torch

from ..utils.atomic import atomic_open
from .errors import CheckpointError

__all__ = ["read_state_dict", "unwrap_state_dict", "save_d2_checkpoint"]

_WRAPPER_KEYS = ("state_dict", "model", "model_state")


def unwrap_state_dict(obj):
    """The ``{name: tensor}`` dict inside a checkpoint, as training scripts save them.

    Unwraps ``{'state_dict': ...}`` (PyTorch ImageNet example, official LIP code),
    ``{'model': ...}`` and ``{'model_state': ...}`` and strips DataParallel's ``module.``
    prefix. numpy arrays become tensors.
    """
    while isinstance(obj, dict):
        inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"the file holds no state dict (found {type(obj).__name__})")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    state = {}
    for key, value in obj.items():
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(value)
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"entry {key!r} is a {type(value).__name__}, not a tensor")
        state[key] = value
    return state


def _read_raw(path):
    if path.endswith(".pkl"):
        with open(path, "rb") as f:
            data = pickle.load(f, encoding="latin1")
        if isinstance(data, dict) and "__author__" in data:
            return data["model"], str(data["__author__"])
        if isinstance(data, dict) and "blobs" in data:  # Caffe2 detection models
            return data["blobs"], "Caffe2"
        return data, "Caffe2"
    return torch.load(path, map_location="cpu", weights_only=True), None


def unreadable(path, exc):
    """The one-line error for a file that does not load at all."""
    text = " ".join(str(exc).split())
    reason = text.split(". ")[0][:160] if text else type(exc).__name__
    return CheckpointError(
        f"cannot read weights {path} ({reason}): a truncated download or not a "
        ".pth/.pkl checkpoint; re-download or re-convert it"
    )


def read_state_dict(path):
    """Reads a weight file; .pth goes through ``torch.load(weights_only=True)``.

    Returns:
        (dict[str, Tensor], str or None): the state dict and the file's ``__author__``
        ("Caffe2" for raw Caffe2 pickles).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"weights {path} do not exist")
    try:
        raw, author = _read_raw(path)
    except Exception as exc:  # truncated zip/pickle, foreign pickles refused by weights_only
        raise unreadable(path, exc) from exc
    try:
        return unwrap_state_dict(raw), author
    except CheckpointError as exc:
        raise CheckpointError(f"weights {path}: {exc}") from None


def save_d2_checkpoint(path, state_dict, author):
    """Writes ``{"model": {name: array}, "__author__", "matching_heuristics": True}``.

    ``.pkl`` stores numpy arrays (Detectron2's model-zoo format), anything else a
    ``torch.save`` of tensors. ``matching_heuristics`` lets a stock
    ``DetectionCheckpointer`` place trunk names (``res2.0.conv1.weight``) under a
    detector's ``backbone.bottom_up.``; :class:`LIPCheckpointer` places them exactly.
    The file is written to a temporary name, then renamed: an existing file is never
    left half-written.
    """
    path = os.fspath(path)
    as_pickle = path.endswith(".pkl")
    model = {k: (v.detach().cpu().numpy() if as_pickle else v.detach().cpu()) for k, v in state_dict.items()}
    data = {"model": model, "__author__": author, "matching_heuristics": True}
    with atomic_open(path, "wb") as f:
        if as_pickle:
            pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)
        else:
            torch.save(data, f)
