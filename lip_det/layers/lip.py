"""LIP as a module, and the description of which logit module a LIP block uses."""
from dataclasses import dataclass

from torch import nn

from .lip2d import lip2d
from .logit import ConvLogit, SharedLogitTrunk

__all__ = ["LIP", "LogitSpec", "LOGIT_MODULES"]

LOGIT_MODULES = ("bottleneck", "projection")
"""Logit modules of a LIP block: the official shared bottleneck trunk with a 1x1 head per
branch, or a 1x1 projection head straight on each branch's own input (cheaper)."""


class LIP(nn.Module):
    """Local importance-based pooling with its own logit module.

    ``forward(x, logit_input=None)`` pools x (N, C, H, W) -> (N, C, H', W') weighted by
    ``exp(self.logit(logit_input))``; the logit module reads ``x`` itself when no other
    input is given (e.g. the output of a shared trunk).
    """

    def __init__(self, logit, kernel=3, stride=2, padding=1, impl="auto"):
        super().__init__()
        self.logit = logit
        self.kernel, self.stride, self.padding, self.impl = kernel, stride, padding, impl

    def forward(self, x, logit_input=None):
        logit = self.logit(x if logit_input is None else logit_input)
        return lip2d(x, logit, self.kernel, self.stride, self.padding, impl=self.impl)

    def extra_repr(self):
        return f"kernel={self.kernel}, stride={self.stride}, padding={self.padding}, impl={self.impl}"


@dataclass(frozen=True)
class LogitSpec:
    """How LIP modules compute their logits (mirrors ``cfg.MODEL.LIP``)."""

    module: str = "bottleneck"
    width: int = 128
    norm: str = "IN"
    coeff: float = 12.0
    impl: str = "auto"

    @classmethod
    def from_config(cls, cfg):
        lip = cfg.MODEL.LIP
        return cls(lip.LOGIT_MODULE, lip.LOGIT_WIDTH, lip.LOGIT_NORM, lip.COEFF, lip.IMPL)

    def conv_lip(self, channels, kernel_size=3):
        """A LIP whose logit is ``ConvLogit(channels -> channels)`` on its own input."""
        return LIP(ConvLogit(channels, channels, kernel_size, self.norm, self.coeff), impl=self.impl)

    def trunk(self, in_channels):
        """The shared logit trunk of a block, or None when heads read their own input."""
        if self.module == "bottleneck":
            return SharedLogitTrunk(in_channels, self.width, self.norm)
        return None

    def head_lip(self, channels):
        """A LIP for one branch of a block: its 1x1 head reads the trunk (or the branch)."""
        head_in = self.width if self.module == "bottleneck" else channels
        return LIP(ConvLogit(head_in, channels, 1, self.norm, self.coeff), impl=self.impl)
