"""Counting what a training step launches: dispatched ATen ops plus Triton kernels."""
import collections

from torch.utils._python_dispatch import TorchDispatchMode

from lip_det.layers.lip2d.triton_kernels import LAUNCHES

__all__ = ["DispatchCounter"]


class DispatchCounter(TorchDispatchMode):
    """Counts dispatched ATen ops by name while active (``with DispatchCounter() as counter``),
    and Triton launches as ``triton.<kernel>`` (they are no ATen ops).

    LIP runs its impls in plain autograd nodes in eager mode, so "fused" counts as the
    PyTorch ops it runs and "triton" as its kernels: the count predicts launches.
    """

    def __init__(self):
        super().__init__()
        self.counts = collections.Counter()

    def __enter__(self):
        self._launched = LAUNCHES.copy()
        return super().__enter__()

    def __exit__(self, *exc):
        launched = LAUNCHES.copy()
        launched.subtract(self._launched)
        self.counts.update({f"triton.{name}": n for name, n in launched.items() if n})
        return super().__exit__(*exc)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self):
        return sum(self.counts.values())
