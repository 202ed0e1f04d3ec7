"""LIP as a module: lip2d with its own logit module."""
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .lean_logit import lean_lip2d, lean_path_applies
from .lip2d import lip2d

__all__ = ["LIP", "LOGIT_MODULES", "run_logit_module"]

LOGIT_MODULES = ("bottleneck", "projection")
"""Logit modules of a LIP block: the official shared bottleneck trunk with a 1x1 head per
branch, or a 1x1 projection head straight on each branch's own input (cheaper)."""


def run_logit_module(module, x, recompute):
    """``module(x)``; with ``recompute`` in training, its activations are not kept for
    backward but recomputed there (same values, less memory, one more forward of it)."""
    if recompute and module.training and torch.is_grad_enabled():
        return checkpoint(module, x, use_reentrant=False)
    return module(x)


class LIP(nn.Module):
    """Local importance-based pooling with its own logit module.

    ``forward(x, logit_input=None)`` pools x (N, C, H, W) -> (N, C, H', W') weighted by
    ``exp(self.logit(logit_input))``; the logit module reads ``x`` itself when no other
    input is given (e.g. the output of a shared trunk).
    """

    def __init__(self, logit, kernel=3, stride=2, padding=1, impl="auto", recompute=False):
        super().__init__()
        self.logit = logit
        self.kernel, self.stride, self.padding, self.impl = kernel, stride, padding, impl
        self.recompute = recompute

    def forward(self, x, logit_input=None):
        if self.recompute and logit_input is None and lean_path_applies((self,), (x,)):
            return lean_lip2d((self,), (x,), x)[0]
        logit = run_logit_module(self.logit, x if logit_input is None else logit_input, self.recompute)
        return lip2d(x, logit, self.kernel, self.stride, self.padding, impl=self.impl)

    def importance(self, x, logit_input=None):
        """The weights ``exp(logit)`` (N, C or 1, H, W): flat ``exp(coeff / 2)`` at initialisation."""
        return self.logit(x if logit_input is None else logit_input).float().exp()

    def extra_repr(self):
        return (f"kernel={self.kernel}, stride={self.stride}, padding={self.padding}, "
                f"impl={self.impl}, recompute={self.recompute}")
