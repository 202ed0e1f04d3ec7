"""Fixed-window downsamplers at LIP's slot: max, avg, min, sum, Lp / L2 and SoftPool.

In LIP's terms each one aggregates a k x k / s window (the slot's: 3x3/2 with padding 1, or
2x2/2 at DenseNet's transitions) with its own importance weights; padded positions never take
part. The output size is always ``F.avg_pool2d(x, kernel, stride, padding)``'s, 1x1 and odd inputs included.

Lp and SoftPool compute in float32 for half inputs, with the window's maximum factored out,
so neither ``exp(x)`` nor ``|x|^p`` can overflow (SoftPool's own CUDA code gives NaN in
float16 there). Stochastic pooling, S3Pool and BlurPool live in their own modules.
"""
import torch
import torch.nn.functional as F
from torch import nn

from .checks import check_value, is_number
from .lip2d.math import compute_dtype

__all__ = [
    "pool_windows",
    "min_pool2d",
    "sum_pool2d",
    "lp_pool2d",
    "soft_pool2d",
    "max_pool2x2_stride1",
    "check_lp_p",
    "ParameterFreePool",
    "WindowPool",
    "MaxPool",
    "AvgPool",
    "MinPool",
    "SumPool",
    "LpPool",
    "L2Pool",
    "SoftPool",
]


def upcast(x):
    """``x`` in :func:`~.lip2d.math.compute_dtype` (float32 for float16 / bfloat16), else ``x`` itself."""
    return x.to(compute_dtype(x))


def pool_windows(x, kernel=3, stride=2, padding=1):
    """Every pooling window of ``x`` as its own axis.

    Returns:
        windows: (N, C, kernel * kernel, H', W'), zero at padded positions;
        valid: (1, 1, kernel * kernel, H', W') bool, False at padded positions.
        H', W' are ``F.avg_pool2d(x, kernel, stride, padding)``'s.
    """
    n, c, h, w = x.shape
    out_h, out_w = (h + 2 * padding - kernel) // stride + 1, (w + 2 * padding - kernel) // stride + 1
    window = dict(kernel_size=kernel, padding=padding, stride=stride)
    windows = F.unfold(x, **window).view(n, c, kernel * kernel, out_h, out_w)
    valid = F.unfold(x.new_ones(1, 1, h, w), **window).view(1, 1, kernel * kernel, out_h, out_w) > 0
    return windows, valid


def min_pool2d(x, kernel=3, stride=2, padding=1):
    """Minimum of each window (padding never wins). (N, C, H, W) -> (N, C, H', W')."""
    return -F.max_pool2d(-x, kernel, stride, padding)


def sum_pool2d(x, kernel=3, stride=2, padding=1):
    """Sum of each window's valid positions. (N, C, H, W) -> (N, C, H', W').

    The average over the whole window, zero padding included, times its size: ONNX's AveragePool
    has no ``divisor_override``, which its TorchScript-based exporter drops without a word."""
    return F.avg_pool2d(x, kernel, stride, padding, count_include_pad=True) * (kernel * kernel)


def lp_pool2d(x, p, kernel=3, stride=2, padding=1):
    """Power average ``(mean |x|^p) ** (1 / p)`` over each window's valid positions.

    ``p = 1`` is average pooling of ``|x|``, ``p -> inf`` max pooling of ``|x|``, ``p = 2``
    the root mean square (the survey's L2-norm pooling divided by sqrt(window size), so
    border windows are not shrunk). Unlike ``torch.nn.functional.lp_pool2d`` (the sum of
    ``x^p``, no ``abs``), it is a mean and safe for any sign and any finite ``p >= 1``:
    each window is divided by its max before the power.

    Shapes: (N, C, H, W) -> (N, C, H', W'), in the dtype of ``x``.
    """
    windows, valid = pool_windows(upcast(x).abs(), kernel, stride, padding)
    peak = windows.amax(2, keepdim=True)
    nonzero = peak > 0
    ratios = windows / torch.where(nonzero, peak, torch.ones_like(peak))
    mean = ratios.pow(p).sum(2, keepdim=True) / valid.sum(2, keepdim=True)
    # An all-zero window gives 0 through ``peak``; a mean of 1 there keeps pow's gradient finite.
    mean = torch.where(nonzero, mean, torch.ones_like(mean))
    return (peak * mean.pow(1.0 / p)).squeeze(2).to(x.dtype)


def soft_pool2d(x, kernel=3, stride=2, padding=1):
    """SoftPool (Stergiou et al., ICCV 2021): ``sum softmax(x_window) * x_window``.

    Equals ``lip2d(x, logit=x)``; computed as a softmax over each window, i.e. with that
    window's max subtracted before ``exp``, so no input magnitude overflows or gives 0/0.
    Shapes: (N, C, H, W) -> (N, C, H', W'), in the dtype of ``x``.
    """
    windows, valid = pool_windows(upcast(x), kernel, stride, padding)
    weights = torch.softmax(windows.masked_fill(~valid, float("-inf")), dim=2)
    return (weights * windows).sum(2).to(x.dtype)


def max_pool2x2_stride1(x):
    """Max over each 2x2 window ``[i, i + 1] x [j, j + 1]`` with stride 1, the size kept.

    The first step of S3Pool and BlurPool (their papers' 2x2/1 max, whose output is one row
    and column smaller); the last row's / column's window here holds only itself, so the
    map keeps H x W and a stride-2 step after it gives ceil(H / 2), the 3x3/2 slot's size.
    Shapes: (N, C, H, W) -> (N, C, H, W).
    """
    return F.max_pool2d(F.pad(x, (0, 1, 0, 1), value=float("-inf")), 2, 1)


def plane_share(weights):
    """``weights`` (N, C, H, W) >= 0 divided by each (n, c) plane's max (all-zero planes stay 0)."""
    peak = weights.amax((2, 3), keepdim=True)
    return weights / torch.where(peak > 0, peak, torch.ones_like(peak))


def check_lp_p(key, p):
    """The exponent of Lp pooling: a finite number >= 1."""
    check_value(key, p, is_number(p) and p >= 1,
                "use a finite number >= 1 (1 = average pooling, larger tends to max pooling)")


class ParameterFreePool(nn.Module):
    """A downsampler without parameters for a LIP slot.

    ``forward(x, shared=None)``: ``shared`` is what a LIP block hands the pools of both of
    its branches (see :class:`~lip_det.modeling.backbone.lip_resnet.LIPBottleneckBlock`);
    only S3Pool reads it. Subclasses define ``pool(x)``; ``from_spec(spec, window)`` builds one for
    a slot of ``window`` (kernel, stride, padding) from the options of a
    :class:`~lip_det.layers.DownsampleSpec` (the ones it takes, if any).
    """

    @classmethod
    def from_spec(cls, spec, window):
        """The operator for a slot of ``window`` (kernel, stride, padding) with ``spec``'s options."""
        return cls()

    def forward(self, x, shared=None):
        return self.pool(x)

    def pool(self, x):
        raise NotImplementedError


class WindowPool(ParameterFreePool):
    """A :class:`ParameterFreePool` over k x k / s windows (3x3/2, padding 1 by default: LIP's slot)."""

    def __init__(self, kernel=3, stride=2, padding=1):
        super().__init__()
        self.kernel, self.stride, self.padding = kernel, stride, padding

    @classmethod
    def from_spec(cls, spec, window):
        return cls(*window)

    @property
    def window(self):
        return self.kernel, self.stride, self.padding

    def extra_repr(self):
        return f"kernel={self.kernel}, stride={self.stride}, padding={self.padding}"


class MaxPool(WindowPool):
    """All weight on the window's maximum (the vanilla stem's pooling)."""

    def pool(self, x):
        return F.max_pool2d(x, *self.window)


class AvgPool(WindowPool):
    """Uniform weights over the valid positions: LIP with flat logits (its initialisation)."""

    def pool(self, x):
        return F.avg_pool2d(x, *self.window, count_include_pad=False)


class MinPool(WindowPool):
    """All weight on the window's minimum."""

    def pool(self, x):
        return min_pool2d(x, *self.window)


class SumPool(WindowPool):
    """Unnormalised uniform weights: the window sum (the count times average pooling)."""

    def pool(self, x):
        return sum_pool2d(x, *self.window)


class LpPool(WindowPool):
    """Power average of ``|x|`` with exponent ``p`` (:func:`lp_pool2d`)."""

    def __init__(self, p=3.0, kernel=3, stride=2, padding=1):
        super().__init__(kernel, stride, padding)
        check_lp_p("p", p)
        self.p = float(p)

    @classmethod
    def from_spec(cls, spec, window):
        return cls(spec.lp_p, *window)

    def pool(self, x):
        return lp_pool2d(x, self.p, *self.window)

    def importance(self, x, shared=None):
        """``|x|^p``, each plane scaled to a max of 1: each position's share of a window sum."""
        return plane_share(upcast(x).abs()).pow(self.p)

    def extra_repr(self):
        return f"p={self.p}, " + super().extra_repr()


class L2Pool(LpPool):
    """The root mean square of each window: :class:`LpPool` with ``p = 2``."""

    def __init__(self, kernel=3, stride=2, padding=1):
        super().__init__(2.0, kernel, stride, padding)

    @classmethod
    def from_spec(cls, spec, window):
        return cls(*window)


class SoftPool(WindowPool):
    """Weights ``exp(x)``: LIP whose logit is the feature itself (:func:`soft_pool2d`)."""

    def pool(self, x):
        return soft_pool2d(x, *self.window)

    def importance(self, x, shared=None):
        """``exp(x)`` up to a constant per plane (its max is 1)."""
        x = upcast(x)
        return (x - x.amax((2, 3), keepdim=True)).exp()
