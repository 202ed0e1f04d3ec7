"""LIP as a module, and the description of which logit module a LIP block uses."""
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .lip2d import lip2d
from .logit import ConvLogit, SharedLogitTrunk

__all__ = ["LIP", "LogitSpec", "LOGIT_MODULES", "run_logit_module"]

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
        logit = run_logit_module(self.logit, x if logit_input is None else logit_input, self.recompute)
        return lip2d(x, logit, self.kernel, self.stride, self.padding, impl=self.impl)

    def extra_repr(self):
        return (f"kernel={self.kernel}, stride={self.stride}, padding={self.padding}, "
                f"impl={self.impl}, recompute={self.recompute}")


@dataclass(frozen=True)
class LogitSpec:
    """How LIP modules compute their logits (mirrors ``cfg.MODEL.LIP``)."""

    module: str = "bottleneck"
    width: int = 128
    norm: str = "IN"
    coeff: float = 12.0
    impl: str = "auto"
    recompute: bool = False

    @classmethod
    def from_config(cls, cfg):
        lip = cfg.MODEL.LIP
        return cls(lip.LOGIT_MODULE, lip.LOGIT_WIDTH, lip.LOGIT_NORM, lip.COEFF, lip.IMPL, lip.RECOMPUTE_LOGITS)

    def conv_lip(self, channels, kernel_size=3):
        """A LIP whose logit is ``ConvLogit(channels -> channels)`` on its own input."""
        logit = ConvLogit(channels, channels, kernel_size, self.norm, self.coeff)
        return LIP(logit, impl=self.impl, recompute=self.recompute)

    def trunk(self, in_channels):
        """The shared logit trunk of a block, or None when heads read their own input."""
        if self.module == "bottleneck":
            return SharedLogitTrunk(in_channels, self.width, self.norm)
        return None

    def head_lip(self, channels):
        """A LIP for one branch of a block: its 1x1 head reads the trunk (or the branch)."""
        head_in = self.width if self.module == "bottleneck" else channels
        logit = ConvLogit(head_in, channels, 1, self.norm, self.coeff)
        return LIP(logit, impl=self.impl, recompute=self.recompute)
