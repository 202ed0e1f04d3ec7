"""lip2d's formulas, written once: every backend computes these.

With ``W = exp(logit)``, ``A`` the window average (``avg_pool2d(., kernel, stride, padding)``,
zero padding counted: the divisors cancel in the ratio) and ``D = A(W)``::

    out = A(x W) / D

``out`` is linear in ``x`` with weights ``W_i / D_o`` and, for an output ``o`` whose window
holds input ``i``, ``d out_o / d logit_i = W_i (x_i - out_o) / D_o``. Summing over the outputs
that read ``i`` (``A^T`` spreads each pooled value back over its window)::

    dL/dx     = W * A^T(g / D)
    dL/dlogit = x * dL/dx - W * A^T(g out / D)

for the output gradient ``g``. Subtracting a constant from every logit of a window leaves
both unchanged, which is how the backends stay finite: "fused" subtracts a per-plane shift
(:func:`exp_shift`), the Triton kernels each window's max (they store ``lse = log D``, so
``W_i / D_o = exp(logit_i - lse_o)``), and gated logits (``coeff * sigmoid``, ``coeff <= 30``)
need none.
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = [
    "Window",
    "compute_dtype",
    "pooled_shape",
    "window_average",
    "window_average_transposed",
    "exp_shift",
    "lip2d_from_weights",
    "lip2d_grads_from_weights",
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
    """``A^T`` of :func:`window_average`: each pooled value / kernel**2 spread over its window.

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


@dataclass(frozen=True)
class Window:
    """lip2d's pooling window: its average ``A`` and that average's transpose ``A^T``."""

    kernel: int
    stride: int
    padding: int
    traceable: bool = False
    """Average with ``F.avg_pool2d`` alone (jit tracing, export and FLOP counting see a pooling)."""

    def average(self, t):
        """(N, C, H, W) -> (N, C, H', W')."""
        if self.traceable:
            return F.avg_pool2d(t, self.kernel, self.stride, self.padding)
        return window_average(t, self.kernel, self.stride, self.padding)

    def average_transposed(self, pooled, like):
        """(N, C, H', W') -> (N, C, H, W), the shape of ``like``."""
        return window_average_transposed(pooled, like, self.kernel, self.stride, self.padding)


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


def lip2d_from_weights(x, weight, window):
    """The forward formula from the weights ``W`` (N, C or 1, H, W), which it overwrites.

    Returns:
        ``out = A(x W) / A(W)`` (N, C, H', W') and ``den = A(W)`` (N, C or 1, H', W').
    """
    den = window.average(weight)
    weighted = weight.mul_(x) if weight.shape == x.shape else weight * x
    return window.average(weighted).div_(den), den


def lip2d_grads_from_weights(grad_out, x, weight, out, den, window, scale=1.0):
    """The backward formula: ``(dL/dx, scale * dL/dlogit)``, both (N, C, H, W).

    ``weight`` is ``W`` (N, C or 1, H, W), ``den`` the forward's ``A(W)``; ``scale`` folds a
    factor on the logit (e.g. a gate's ``coeff``) into the same passes.
    """
    grad_by_den = torch.div(grad_out, den)
    grad_x = window.average_transposed(grad_by_den, x).mul_(weight)
    grad_logit = window.average_transposed(grad_by_den.mul_(out), x).mul_(weight).mul_(-scale)
    return grad_x, grad_logit.addcmul_(x, grad_x, value=scale)
