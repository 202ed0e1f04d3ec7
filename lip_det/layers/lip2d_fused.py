"""A memory-lean, fp16-safe lip2d built from PyTorch ops (any device, no compilation).

Forward and backward both compute in float32 when the inputs are float16 / bfloat16, so
``exp(logit)`` cannot overflow (``exp(12) = 162755 > 65504``). Backward keeps only the
inputs, the output and the pooled weights (a quarter of the input size), and recomputes
``exp(logit)``; the naive formula keeps ``exp(logit)``, ``x * exp(logit)`` and both pooled
maps alive.

With ``W = exp(logit)``, ``A`` the window sum and ``D = A(W)``, ``y = A(x W) / D``:
    dL/dx     = W * A^T(g / D)
    dL/dlogit = W * (x * A^T(g / D) - A^T(g y / D))
"""
import torch
import torch.nn.functional as F

__all__ = ["lip2d_fused", "lip2d_stable"]

_EXP_SAFE = {torch.float32: 80.0, torch.float64: 700.0}
"""|logit| below which exp(logit) and a 3x3 window sum of it stay finite in that dtype."""


def compute_dtype(x):
    """float32 for half-precision inputs, else the input dtype."""
    return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype


def _exp_shift(logit, dtype):
    """Per-(n, c) plane max of ``logit`` (N, C, 1, 1), or None when exp(logit) is safe as is.

    Subtracting a constant per plane leaves every window's ratio unchanged.
    """
    low, high = torch.aminmax(logit)
    limit = _EXP_SAFE[dtype]
    if -limit <= float(low) and float(high) <= limit:
        return None
    return logit.amax((2, 3), keepdim=True).to(dtype)


def _weights(logit, shift, dtype):
    """exp(logit - shift) in ``dtype``, as a new tensor."""
    if shift is not None:
        return torch.sub(logit, shift, out=torch.empty(logit.shape, dtype=dtype, device=logit.device)).exp_()
    return torch.exp(logit) if logit.dtype == dtype else logit.to(dtype).exp_()


class _LIP2dFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, logit, kernel, stride, padding):
        dtype = compute_dtype(x)
        shift = _exp_shift(logit, dtype)
        weight = _weights(logit, shift, dtype)
        den = F.avg_pool2d(weight, kernel, stride, padding)
        weighted = weight.mul_(x) if weight.shape == x.shape else weight * x
        del weight
        out = F.avg_pool2d(weighted, kernel, stride, padding).div_(den)
        out = out.to(torch.promote_types(x.dtype, logit.dtype))
        ctx.save_for_backward(x, logit, shift, den, out)
        ctx.window = (kernel, stride, padding)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, logit, shift, den, out = ctx.saved_tensors
        kernel, stride, padding = ctx.window
        n, c, h, w = x.shape
        weight = _weights(logit, shift, den.dtype)
        # Both window sums transposed in one call: grads[0] = A^T(g / D), grads[1] = -A^T(g y / D).
        pooled_grads = grad_out.new_empty((2, n, c) + grad_out.shape[2:], dtype=den.dtype)
        torch.div(grad_out, den, out=pooled_grads[0])
        torch.mul(pooled_grads[0], out, out=pooled_grads[1]).neg_()
        grads = torch.ops.aten.avg_pool2d_backward(
            pooled_grads.flatten(0, 1), weight.new_empty(()).expand(2 * n, c, h, w),
            _pair(kernel), _pair(stride), _pair(padding), False, True, None,
        ).unflatten(0, (2, n))
        grad_x = grads[0].mul_(weight)
        grad_logit = grads[1].mul_(weight).addcmul_(x, grad_x)
        if logit.shape[1] != c:
            grad_logit = grad_logit.sum(1, keepdim=True)
        return grad_x.to(x.dtype), grad_logit.to(logit.dtype), None, None, None


def _pair(v):
    return [v, v]


def lip2d_fused(x, logit, kernel=3, stride=2, padding=1):
    """lip2d as one autograd node that saves x, logit, its output and the pooled weights.

    Args:
        x: (N, C, H, W) features.
        logit: (N, C, H, W) or (N, 1, H, W) logits.
    Returns:
        (N, C, H', W') in the promoted dtype of x and logit.
    """
    return _LIP2dFunction.apply(x, logit, kernel, stride, padding)


def lip2d_stable(x, logit, kernel=3, stride=2, padding=1):
    """The paper's formula made overflow-free with plain, traceable ops (for jit tracing).

    Computes in float32 for half inputs and subtracts each (n, c) plane's max logit
    (a constant per window, so the ratio is unchanged). Shapes as :func:`lip2d_fused`.
    """
    dtype = compute_dtype(x)
    logit32 = logit.to(dtype)
    weight = (logit32 - logit32.amax((2, 3), keepdim=True).detach()).exp()
    out = F.avg_pool2d(x.to(dtype) * weight, kernel, stride, padding) / F.avg_pool2d(
        weight, kernel, stride, padding
    )
    return out.to(torch.promote_types(x.dtype, logit.dtype))
