"""BlurPool, anti-aliased downsampling (Zhang, ICML 2019, "Making CNNs shift-invariant again").

Max pooling is "max with stride 1, then subsample"; BlurPool puts a binomial low-pass filter
before the subsampling: 2x2/1 max, then an f x f binomial blur with stride 2 (f = 3:
[1, 2, 1] x [1, 2, 1] / 16), the paper's MaxBlurPool.

Mapping onto LIP's 3x3/2 slot: the 2x2/1 max keeps H x W (:func:`max_pool2x2_stride1`),
the blur pads f - 1 rows and columns ((f - 1) // 2 before, f // 2 after) and strides 2, so
the output is ceil(H / 2) x ceil(W / 2) = ``F.avg_pool2d(x, 3, 2, 1)``'s size. Padding
replicates the border: the paper's reflection is undefined for maps smaller than the pad
(1x1 and 2x2 FPN top levels). Zhang's ResNet blurs without the max on the shortcut and
after a stride-1 3x3 in the residual branch; here the slot's operator is the same
everywhere, so an ablation changes one word.
"""
import math

import torch
import torch.nn.functional as F

from .checks import check_value, is_int
from .window_pool import ParameterFreePool, max_pool2x2_stride1

__all__ = ["BLUR_FILTER_SIZES", "check_blur_filter", "binomial_filter", "blur_pool2d", "BlurPool"]

BLUR_FILTER_SIZES = range(2, 8)
"""Filter sizes BlurPool offers (the paper's Rect-2, Tri-3, Bin-5 and the rows between, up to 7)."""


def check_blur_filter(key, size):
    """A binomial filter size BlurPool offers: an integer in :data:`BLUR_FILTER_SIZES`."""
    check_value(key, size, is_int(size) and size in BLUR_FILTER_SIZES,
                f"use an integer in {BLUR_FILTER_SIZES.start}..{BLUR_FILTER_SIZES.stop - 1}")


def binomial_filter(size):
    """The normalised 2-D binomial filter, outer product of row ``size - 1`` of Pascal's triangle.

    Shapes: () -> (size, size), sums to 1.
    """
    row = torch.tensor([math.comb(size - 1, k) for k in range(size)], dtype=torch.float64)
    kernel = torch.outer(row, row)
    return (kernel / kernel.sum()).float()


def blur_pool2d(x, blur):
    """2x2/1 max, replicate padding, depthwise ``blur`` with stride 2.

    Args:
        x: (N, C, H, W) features.
        blur: (f, f) filter (e.g. :func:`binomial_filter`).
    Returns:
        (N, C, ceil(H/2), ceil(W/2)) in the dtype of ``x``.
    """
    size = blur.shape[-1]
    before, after = (size - 1) // 2, size // 2
    padded = F.pad(max_pool2x2_stride1(x), (before, after, before, after), mode="replicate")
    n, c, h, w = padded.shape
    # Every plane as a one-channel image, so the kernel is (1, 1, f, f) whatever C is: a depthwise
    # weight expanded to C channels has a shape ONNX's TorchScript-based exporter cannot read.
    out = F.conv2d(padded.reshape(n * c, 1, h, w), blur.to(dtype=x.dtype, device=x.device)[None, None], stride=2)
    return out.reshape(n, c, out.shape[-2], out.shape[-1])


class BlurPool(ParameterFreePool):
    """MaxBlurPool with an ``filter_size`` x ``filter_size`` binomial blur (:func:`blur_pool2d`).

    The filter is a non-persistent buffer: the module adds nothing to a checkpoint.
    """

    def __init__(self, filter_size=3):
        super().__init__()
        check_blur_filter("filter_size", filter_size)
        self.register_buffer("blur", binomial_filter(filter_size), persistent=False)

    @classmethod
    def from_spec(cls, spec, window):
        """Any stride-2 slot: the 2x2/1 max and the stride-2 blur take no window (ceil(H/2) rows)."""
        return cls(spec.blur_filter)

    def pool(self, x):
        return blur_pool2d(x, self.blur)

    def extra_repr(self):
        return f"filter_size={self.blur.shape[-1]}"
