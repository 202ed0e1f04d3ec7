"""Counting the ATen ops a training step dispatches: what launches kernels on a GPU."""
import collections

import torch

from torch.utils._python_dispatch import TorchDispatchMode

from ..layers.lip2d.op import TRITON_OPS

__all__ = ["DispatchCounter"]

_LIP2D_OPS = ("lip_det::lip2d_forward", "lip_det::lip2d_backward")


def _runs_one_kernel(func, args, kwargs):
    """Whether a lip_det custom op is one Triton launch: the gated ops, and the lip2d ops with
    impl "triton" (their last argument)."""
    name = func.name()
    if name in TRITON_OPS:
        return True
    impl = kwargs.get("impl", args[-1] if args else None)
    return name in _LIP2D_OPS and impl == "triton"


class DispatchCounter(TorchDispatchMode):
    """Counts dispatched ops by name while active (``with DispatchCounter() as counter``).

    A lip_det custom op backed by one Triton kernel counts once; one that wraps PyTorch ops
    ("fused") counts as the ops it runs, so the count predicts launches instead of hiding them.
    """

    def __init__(self):
        super().__init__()
        self.counts = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func.namespace == "lip_det" and not _runs_one_kernel(func, args, kwargs):
            with self:  # count what its implementation runs
                return func._op_dk(torch._C.DispatchKey.CompositeExplicitAutograd, *args, **kwargs)
        self.counts[str(func.overloadpacket)] += 1
        return func(*args, **kwargs)

    @property
    def total(self):
        return sum(self.counts.values())
