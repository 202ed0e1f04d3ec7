"""A memory-lean, fp16-safe lip2d built from PyTorch ops (any device, no compilation).

Forward and backward both compute in float32 when the inputs are float16 / bfloat16, so
``exp(logit)`` cannot overflow (``exp(12) = 162755 > 65504``). Backward keeps only the
inputs, the output, the pooled weights (a quarter of the input size) and one exponent
shift per plane, and recomputes ``exp(logit)``; the naive formula keeps ``exp(logit)``,
``x * exp(logit)`` and both pooled maps alive. Nothing is read back to the host: the
exponent shift is computed on the device.

With ``W = exp(logit)``, ``A`` the window sum and ``D = A(W)``, ``y = A(x W) / D``:
    dL/dx     = W * A^T(g / D)
    dL/dlogit = W * (x * A^T(g / D) - A^T(g y / D))
"""
import torch
import torch.nn.functional as F

__all__ = [
    "compute_dtype",
    "pooled_shape",
    "window_average",
    "window_average_transposed",
    "exp_shift",
    "fused_forward",
    "fused_backward",
    "lip2d_stable",
]

_EXP_LIMIT = {torch.float32: 80.0, torch.float64: 700.0}
"""|logit| up to which exp(logit), and a window sum of it, stay finite and normal in that dtype."""


def compute_dtype(x):
    """float32 for half-precision inputs, else the input dtype."""
    return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype


def pooled_shape(x, kernel, stride, padding):
    """(N, C, H', W') of ``F.avg_pool2d(x, kernel, stride, padding)`` for x (N, C, H, W)."""
    n, c, h, w = x.shape
    return n, c, (h + 2 * padding - kernel) // stride + 1, (w + 2 * padding - kernel) // stride + 1


def _runs_on_onednn(t):
    return t.device.type == "cpu" and t.dtype == torch.float32 and t.is_contiguous() and torch.backends.mkldnn.is_available()


def _averaging_kernel(t, channels, kernel):
    """The depthwise conv weight (channels, 1, kernel, kernel) of a window average."""
    return t.new_full((channels, 1, kernel, kernel), kernel**-2)


def window_average(x, kernel, stride, padding):
    """``F.avg_pool2d(x, kernel, stride, padding)`` (zero padding counted), outside autograd.

    A contiguous float32 x on the CPU is averaged by oneDNN's depthwise convolution with
    weight ``1 / kernel**2``: the same window sums, several times faster than ATen's NCHW
    average pooling, which loops over the windows one by one.
    Shapes: (N, C, H, W) -> (N, C, H', W').
    """
    if not _runs_on_onednn(x):
        return F.avg_pool2d(x, kernel, stride, padding)
    channels = x.shape[1]
    return F.conv2d(x, _averaging_kernel(x, channels, kernel), None, stride, padding, 1, channels)


def window_average_transposed(pooled, like, kernel, stride, padding):
    """A^T of :func:`window_average`: each pooled value / kernel**2 spread over its window.

    On the CPU in float32 this is the depthwise convolution's input gradient (oneDNN), like
    :func:`window_average`; ``like`` then stands in for the convolution's input (its values
    are not read).
    Shapes: pooled (N, C, H', W'), like (N, C, H, W) -> (N, C, H, W) in pooled's dtype.
    """
    strides, paddings = [stride] * 2, [padding] * 2
    if not (_runs_on_onednn(pooled) and _runs_on_onednn(like)):
        full = pooled.new_empty(()).expand(like.shape)
        return torch.ops.aten.avg_pool2d_backward(pooled, full, [kernel] * 2, strides, paddings, False, True, None)
    channels = like.shape[1]
    return torch.ops.aten.convolution_backward(
        pooled, like, _averaging_kernel(pooled, channels, kernel), None, strides, paddings, [1, 1], False,
        [0, 0], channels, [True, False, False])[0]


def exp_shift(logit, dtype):
    """Per-(n, c) plane shift ``s`` (N, C, 1, 1) in ``dtype`` for ``exp(logit - s)``, on the device.

    ``s = 0`` for a plane whose logits all lie in ``[-L, L]`` (``L`` from :data:`_EXP_LIMIT`),
    so ``exp(logit)`` is used as is; otherwise the ``s`` nearest 0 that brings the plane into
    ``[-L, L]``, or ``max - L`` for a plane wider than ``2 L``: nothing overflows, and only
    windows lying entirely ``2 L`` below the plane's max underflow. Subtracting a constant
    per plane leaves every window's ratio unchanged.
    """
    low, high = logit.detach().flatten(2).aminmax(dim=2)
    limit = _EXP_LIMIT[dtype]
    shift = (low.to(dtype) + limit).clamp(max=0).maximum(high.to(dtype) - limit)
    return shift[..., None, None]


def _weights(logit, shift):
    """exp(logit - shift) in shift's dtype, as a new tensor."""
    weight = torch.empty(logit.shape, dtype=shift.dtype, device=logit.device)
    return torch.sub(logit, shift, out=weight).exp_()


def fused_forward(x, logit, kernel, stride, padding):
    """lip2d of x (N, C, H, W) with logit (N, C or 1, H, W).

    Returns:
        out (N, C, H', W') in the promoted dtype of x and logit, and what
        :func:`fused_backward` needs: the pooled weights (N, C or 1, H', W') and the
        exponent shifts (N, C or 1, 1, 1), both in :func:`compute_dtype`.
    """
    shift = exp_shift(logit, compute_dtype(x))
    weight = _weights(logit, shift)
    den = window_average(weight, kernel, stride, padding)
    weighted = weight.mul_(x) if weight.shape == x.shape else weight * x
    del weight
    out = window_average(weighted, kernel, stride, padding).div_(den)
    return out.to(torch.promote_types(x.dtype, logit.dtype)), (den, shift)


def fused_backward(grad_out, x, logit, out, saved, kernel, stride, padding):
    """Gradients (x's shape and dtype, logit's shape and dtype) from :func:`fused_forward`'s results."""
    den, shift = saved
    weight = _weights(logit, shift)
    grad_by_den = torch.div(grad_out, den)
    grad_x = window_average_transposed(grad_by_den, x, kernel, stride, padding).mul_(weight)
    grad_logit = window_average_transposed(grad_by_den.mul_(out), x, kernel, stride, padding)
    grad_logit = grad_logit.mul_(weight).neg_().addcmul_(x, grad_x)
    if logit.shape[1] != x.shape[1]:
        grad_logit = grad_logit.sum(1, keepdim=True)
    return grad_x.to(x.dtype), grad_logit.to(logit.dtype)


def lip2d_stable(x, logit, kernel=3, stride=2, padding=1):
    """The paper's formula made overflow-free with plain, traceable ops (for jit tracing).

    Computes in float32 for half inputs and subtracts :func:`exp_shift` (a constant per
    window, so the ratio is unchanged). Shapes as :func:`fused_forward`'s output.
    """
    dtype = compute_dtype(x)
    weight = (logit.to(dtype) - exp_shift(logit, dtype)).exp()
    out = F.avg_pool2d(x.to(dtype) * weight, kernel, stride, padding) / F.avg_pool2d(
        weight, kernel, stride, padding
    )
    return out.to(torch.promote_types(x.dtype, logit.dtype))
