"""LIP as a module: lip2d with its own logit module."""
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .lip2d import gated_lip2d, gated_norm_applies, lean_lip2d, lean_path_applies, lip2d
from .lip2d.auto import auto_impl
from .logit import ConvLogit

__all__ = ["LIP", "LOGIT_MODULES", "RECOMPUTE_DEVICES", "recomputes", "run_logit_module"]

LOGIT_MODULES = ("bottleneck", "projection")
"""Logit modules of a LIP block: the official shared bottleneck trunk with a 1x1 head per
branch, or a 1x1 projection head straight on each branch's own input (cheaper)."""


RECOMPUTE_DEVICES = ("cpu",)
"""Device types on which ``RECOMPUTE_LOGITS: None`` (the default) recomputes logit modules.

CPU: the lean block node keeps x1.22 of vanilla's activation memory instead of x2.3 at no
cost in time. CUDA: LIP heads run as the gated Triton kernels, which keep no logits anyway;
recomputing the shared trunk on top costs time for memory (docs/results.md)."""


def recomputes(setting, device):
    """``RECOMPUTE_LOGITS`` for tensors on ``device``: ``setting``, or for None the device's default."""
    return device.type in RECOMPUTE_DEVICES if setting is None else setting


def run_logit_module(module, x, recompute):
    """``module(x)``; when :func:`recomputes` in training, its activations are not kept for
    backward but recomputed there (same values, less memory, one more forward of it)."""
    if recomputes(recompute, x.device) and module.training and torch.is_grad_enabled():
        return checkpoint(module, x, use_reentrant=False)
    return module(x)


class LIP(nn.Module):
    """Local importance-based pooling with its own logit module.

    ``forward(x, logit_input=None)`` pools x (N, C, H, W) -> (N, C, H', W') weighted by
    ``exp(self.logit(logit_input))``; the logit module reads ``x`` itself when no other
    input is given (e.g. the output of a shared trunk).
    """

    def __init__(self, logit, kernel=3, stride=2, padding=1, impl="auto", recompute=None):
        super().__init__()
        self.logit = logit
        self.kernel, self.stride, self.padding, self.impl = kernel, stride, padding, impl
        self.recompute = recompute

    def forward(self, x, logit_input=None):
        source = x if logit_input is None else logit_input
        if self.runs_gated(x):
            logit = self.logit
            return gated_lip2d(x, logit.conv(source), logit.norm, logit.gate.coeff,
                               (self.kernel, self.stride, self.padding))
        if recomputes(self.recompute, x.device) and logit_input is None and lean_path_applies((self,), (x,)):
            return lean_lip2d((self,), (x,), x)[0]
        logit = run_logit_module(self.logit, source, self.recompute)
        return lip2d(x, logit, self.kernel, self.stride, self.padding, impl=self.impl)

    def runs_gated(self, x):
        """Whether :meth:`forward` runs its logit head's norm, gate and lip2d as the gated Triton
        kernels (:func:`~lip_det.layers.lip2d.gated_lip2d`): a conv head with InstanceNorm or no
        norm, impl "triton" (or "auto" choosing it), eager mode (tracing and compiling need
        plain ops)."""
        if torch.jit.is_tracing() or torch.compiler.is_compiling():
            return False
        if not (isinstance(self.logit, ConvLogit) and gated_norm_applies(self.logit.norm)):
            return False
        impl = self.impl if self.impl != "auto" else auto_impl(x.device, x.dtype, x.dtype)
        return impl == "triton"

    def importance(self, x, logit_input=None):
        """The weights ``exp(logit)`` (N, C or 1, H, W): flat ``exp(coeff / 2)`` at initialisation."""
        return self.logit(x if logit_input is None else logit_input).float().exp()

    def extra_repr(self):
        return (f"kernel={self.kernel}, stride={self.stride}, padding={self.padding}, "
                f"impl={self.impl}, recompute={self.recompute}")
