"""lip2d's "fused" backend: PyTorch ops, fp16-safe and memory-lean, any device, no compilation.

Forward and backward compute in float32 when the inputs are float16 / bfloat16, and subtract
a per-plane shift (:func:`~.math.exp_shift`) before ``exp``, so nothing overflows
(``exp(12) = 162755 > 65504``). Backward keeps only the inputs, the output, the pooled
weights (a quarter of the input size) and the shifts, and recomputes ``exp(logit)``; the
naive formula keeps ``exp(logit)``, ``x * exp(logit)`` and both pooled maps alive. Nothing
is read back to the host. The formulas are :mod:`.math`'s.
"""
import torch

from .math import Window, compute_dtype, exp_shift, lip2d_from_weights, lip2d_grads_from_weights

__all__ = ["fused_forward", "fused_backward", "lip2d_stable"]


def _weights(logit, shift):
    """exp(logit - shift) in shift's dtype, as a new tensor."""
    weight = torch.empty(logit.shape, dtype=shift.dtype, device=logit.device)
    return torch.sub(logit, shift, out=weight).exp_()


def fused_forward(x, logit, kernel, stride, padding):
    """lip2d of x (N, C, H, W) with logit (N, C or 1, H, W).

    Returns:
        out (N, C, H', W') in the promoted dtype of x and logit, and what
        :func:`fused_backward` needs: the pooled weights (N, C or 1, H', W') and the
        exponent shifts (N, C or 1, 1, 1), both in :func:`~.math.compute_dtype`.
    """
    shift = exp_shift(logit, compute_dtype(x))
    out, den = lip2d_from_weights(x, _weights(logit, shift), Window(kernel, stride, padding))
    return out.to(torch.promote_types(x.dtype, logit.dtype)), (den, shift)


def fused_backward(grad_out, x, logit, out, saved, kernel, stride, padding):
    """Gradients (x's shape and dtype, logit's shape and dtype) from :func:`fused_forward`'s results."""
    den, shift = saved
    grad_x, grad_logit = lip2d_grads_from_weights(
        grad_out, x, _weights(logit, shift), out, den, Window(kernel, stride, padding))
    if logit.shape[1] != x.shape[1]:
        grad_logit = grad_logit.sum(1, keepdim=True)
    return grad_x.to(x.dtype), grad_logit.to(logit.dtype)


def lip2d_stable(x, logit, kernel=3, stride=2, padding=1):
    """The paper's formula made overflow-free with plain, traceable ops (for jit tracing).

    Computes in float32 for half inputs and subtracts :func:`~.math.exp_shift` (a constant
    per window, so the ratio is unchanged). Shapes as :func:`fused_forward`'s output.
    """
    dtype = compute_dtype(x)
    weight = (logit.to(dtype) - exp_shift(logit, dtype)).exp()
    out, _ = lip2d_from_weights(x.to(dtype), weight, Window(kernel, stride, padding, traceable=True))
    return out.to(torch.promote_types(x.dtype, logit.dtype))
