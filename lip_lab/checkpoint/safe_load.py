"""Reading weight files without running code from them.

A ``.pkl`` (Detectron2's model-zoo format, MSRA/Caffe2 blobs, what ``tools/convert_to_d2.py`` writes)
is a plain pickle; :class:`WeightsUnpickler` admits only the globals such a file needs (dicts and
ordered dicts, lists, tuples, strings, bytes, numbers, booleans, None and numpy arrays, dtypes and
scalars) and refuses any other before it is called. Anything else is a ``torch.save`` file and loads
with ``torch.load(weights_only=True)``. A file that cannot be read, or does not hold a dict of
weights, is a one-line :class:`CheckpointError`.
"""
import collections
import os
import pickle

import numpy as np
import torch

from .names import CheckpointError

__all__ = ["SAFE_PICKLE_GLOBALS", "WeightsUnpickler", "read_weights", "load_weights_file", "check_state_dict"]


def _latin1_bytes(text, encoding="latin1"):
    """``_codecs.encode`` as pickle protocols 0-2 use it for bytes (``encode(text, "latin1")``), and only so."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode({type(text).__name__}, {encoding!r}) is not a bytes literal")
    return text.encode("latin1")


def _numpy_globals():
    """numpy's array / scalar rebuilders under the module names numpy 1.x (``numpy.core``) and 2.x
    (``numpy._core``) pickle them as; taken from numpy's own ``__reduce__``, so nothing is imported."""
    array = np.zeros(1)
    rebuilders = {("multiarray", "_reconstruct"): array.__reduce__()[0],  # arrays, every protocol
                  ("multiarray", "scalar"): np.float32(0).__reduce__()[0],  # numpy scalars
                  ("numeric", "_frombuffer"): array.__reduce_ex__(5)[0]}  # arrays, protocol 5 (HIGHEST_PROTOCOL)
    return {(f"numpy.{core}.{module}", name): fn for core in ("core", "_core") for (module, name), fn in rebuilders.items()}


SAFE_PICKLE_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    **_numpy_globals(),
    # protocols 0-2 written by Python 3 spell bytes as _codecs.encode(text, "latin1"), and b"" as bytes()
    ("_codecs", "encode"): _latin1_bytes,
    ("builtins", "bytes"): bytes,
    ("__builtin__", "bytes"): bytes,
}
"""``(module, name)`` -> object: every global a Detectron2 ``.pkl`` may name; all else is refused."""


class WeightsUnpickler(pickle.Unpickler):
    """An unpickler for weight files: :data:`SAFE_PICKLE_GLOBALS` only. Any other global (``os.system``,
    ``builtins.eval``, a class) is a :class:`CheckpointError` raised when the pickle names it, before
    anything could call it. Reads Python 2 pickles (MSRA's) as Detectron2 does (``latin1``)."""

    def __init__(self, file, source):
        super().__init__(file, encoding="latin1")
        self.source = source

    def find_class(self, module, name):
        try:
            return SAFE_PICKLE_GLOBALS[(module, name)]
        except KeyError:
            raise CheckpointError(
                f"refused to load weights {self.source}: its pickle names the global {module}.{name}, which could "
                "run code and which Detectron2 weights (dicts, strings, numbers, numpy arrays) never hold; nothing "
                "from it was run. Re-download it or re-convert it (tools/convert_to_d2.py) from a trusted source"
            ) from None


def read_weights(path):
    """The object a weights file holds, read without running code from it: a ``.pkl`` with
    :class:`WeightsUnpickler`, any other file with ``torch.load(weights_only=True)`` on the CPU."""
    path = os.fspath(path)
    try:
        if path.endswith(".pkl"):
            with open(path, "rb") as f:
                return WeightsUnpickler(f, path).load()
        return torch.load(path, map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except OSError as exc:
        raise CheckpointError(f"cannot read weights {path}: {exc.strerror or exc}") from exc
    except Exception as exc:  # whatever a truncated or foreign file makes pickle / torch's zip reader raise
        reason = " ".join(str(exc).split()).split(". ")[0][:160] or type(exc).__name__
        kind = "Detectron2 .pkl weights" if path.endswith(".pkl") else ".pth checkpoint"
        raise CheckpointError(
            f"cannot read weights {path} ({reason}): a truncated download, not a {kind} file, "
            "or pickled objects other than tensors; re-download or re-convert it"
        ) from exc


def _describe(obj):
    """``an empty dict``, ``a list``, ``an int``, ``a numpy array of object``: what ``obj`` is, for a message."""
    what = f"numpy array of {obj.dtype}" if isinstance(obj, np.ndarray) else type(obj).__name__
    if isinstance(obj, (dict, list, tuple, str, bytes)) and not obj:
        what = f"empty {what}"
    return f"{'an' if what[0] in 'aeiou' else 'a'} {what}"


def check_state_dict(state, path):
    """``state`` if it is a non-empty ``{name: tensor or numeric numpy array}``, else a one-line :class:`CheckpointError`."""
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"weights {path} hold {_describe(state)} where a dict of weights (name -> array) "
                              "belongs; is it a Detectron2 / PyTorch checkpoint? Re-download or re-convert it")
    for name, value in state.items():
        is_array = isinstance(value, torch.Tensor) or (isinstance(value, np.ndarray) and value.dtype.kind in "biufc")
        if not isinstance(name, str) or not is_array:
            raise CheckpointError(f"weights {path}: entry {str(name)[:80]!r} holds {_describe(value)}, not a tensor "
                                  "or numeric array; is it a Detectron2 / PyTorch checkpoint? Re-download or re-convert it")
    return state


def load_weights_file(path):
    """A weights file as Detectron2's checkpointer reads it, without running code from it:
    ``{"model": {name: array or tensor}, ...}``.

    ``.pkl``: Detectron2's model-zoo format (``"model"`` and ``"__author__"``) as it is, else
    Caffe2 / Detectron1 blobs (``{name: array}`` or ``{"blobs": ...}``, ``_momentum`` dropped);
    ``.pyth``: pycls (``"model_state"``); any other file: a ``torch.save`` of ``{"model": ...}`` or of
    a bare state dict. The weights (``"model"``, unwrapped as :class:`LIPCheckpointer` does) must be
    a non-empty ``{name: tensor or array}``; anything else is a one-line :class:`CheckpointError`.
    """
    from .checkpointer import unwrap_state_dict  # checkpointer.py imports this module

    path = os.fspath(path)
    data = read_weights(path)
    if not isinstance(data, dict) or not data:
        raise CheckpointError(f"weights {path} hold {_describe(data)}, not a checkpoint dict; is it a "
                              "Detectron2 / PyTorch checkpoint? Re-download or re-convert it")
    if path.endswith(".pkl") and not ("model" in data and "__author__" in data):
        blobs = data.get("blobs", data)  # Detectron1 detectors keep their blobs there, ImageNet models do not
        if isinstance(blobs, dict):
            blobs = {k: v for k, v in blobs.items() if not (isinstance(k, str) and k.endswith("_momentum"))}
        data = {"model": blobs, "__author__": "Caffe2", "matching_heuristics": True}
    elif path.endswith(".pyth"):
        state = data.get("model_state")
        if isinstance(state, dict):
            state = {k: v for k, v in state.items() if not (isinstance(k, str) and k.endswith("num_batches_tracked"))}
        data = {"model": state, "__author__": "pycls", "matching_heuristics": True}
    elif "model" not in data:
        data = {"model": data}
    check_state_dict(unwrap_state_dict(data["model"]), path)
    return data
