"""Counting the memory autograd keeps for backward."""
from contextlib import contextmanager

import torch

__all__ = ["SavedTensors"]


class SavedTensors:
    """Counts the bytes autograd keeps for backward while :meth:`recording` is open.

    Storages are counted once however many saved tensors view them. ``excluded`` storages
    (e.g. an op's inputs and output, which the surrounding network holds anyway) are
    reported apart: ``total`` counts everything, ``extra`` only what is not excluded.
    """

    def __init__(self, excluded=()):
        self._excluded = {self._key(t) for t in excluded}
        self._seen = {}

    @staticmethod
    def _key(t):
        return (t.device.type, t.untyped_storage().data_ptr())

    def _pack(self, t):
        self._seen[self._key(t)] = t.untyped_storage().nbytes()
        return t

    @contextmanager
    def recording(self):
        with torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t):
            yield self

    def exclude(self, *tensors):
        self._excluded.update(self._key(t) for t in tensors)

    @property
    def total(self):
        return sum(self._seen.values())

    @property
    def extra(self):
        return sum(n for k, n in self._seen.items() if k not in self._excluded)
