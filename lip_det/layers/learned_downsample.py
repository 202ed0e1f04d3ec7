"""Learned downsamplers at LIP's slot: SPD-Conv and Haar wavelet downsampling (HWD).

Both first move each 2x2 block of the input into channels, losing nothing (C -> 4C at half
the size), then learn a stride-1 convolution back to C channels:

- SPD-Conv (Sunkara & Luo, ECML-PKDD 2022): space-to-depth, ``pixel_unshuffle(x, 2)`` (the
  four phases of channel c at 4c .. 4c + 3), then a 3x3 conv 4C -> C.
- HWD (Xu et al., Pattern Recognition 2023): the one-level orthonormal Haar transform, its
  LL, LH, HL, HH sub-bands stacked band after band as 4C channels, then a 1x1 conv 4C -> C.

After the conv comes what the slot's neighbours have. In the backbone (stem, residual branch,
shortcut) every input is a ReLU output and the next layer a conv, so the slot ends like a
ResNet conv: ``norm`` (``MODEL.RESNETS.NORM``) and ReLU, as the papers' conv-BN-ReLU (HWD) and
conv-BN-SiLU (SPD-Conv's YOLOv5) do; the conv has a bias only without a norm (Detectron2's
rule). At the FPN top levels (``norm=None``) P6 / P7 are outputs like every FPN level: a conv
with bias and nothing after it, as Detectron2's P6 / P7 convs (no norm even with ``FPN.NORM``).

Odd sizes: one zero row at the bottom and / or one zero column at the right make H and W even
before the split, as ``pytorch_wavelets``' ``DWTForward(mode="zero")`` (HWD's setting) pads
them, so the output is ceil(H/2) x ceil(W/2), the slot's size; a 1x1 map becomes one 2x2
block with three zeros.
"""
import torch
import torch.nn.functional as F
from detectron2.layers import Conv2d, get_norm
from torch import nn

from .checks import check_value, is_int

__all__ = ["pad_to_even", "space_to_depth", "haar_subbands", "PhaseConvDownsample", "SPDConv", "HaarDownsample"]


def pad_to_even(x):
    """``x`` with a zero row at the bottom if H is odd and a zero column at the right if W is.

    Shapes: (N, C, H, W) -> (N, C, 2 ceil(H/2), 2 ceil(W/2)).
    """
    return F.pad(x, (0, x.shape[-1] % 2, 0, x.shape[-2] % 2))


def space_to_depth(x):
    """The 2x2 phases of ``x`` (zero-padded to even size) as channels: ``pixel_unshuffle(x, 2)``.

    Output channel 4c + 2i + j at (r, s) holds input channel c at (2r + i, 2s + j).
    Shapes: (N, C, H, W) -> (N, 4C, ceil(H/2), ceil(W/2)).
    """
    return F.pixel_unshuffle(pad_to_even(x), 2)


def haar_subbands(x):
    """One-level orthonormal 2-D Haar transform of ``x`` (zero-padded to even size).

    With a, b the top-left, top-right and c, d the bottom-left, bottom-right of each 2x2 block:
    LL = (a + b + c + d) / 2, LH = (a + b - c - d) / 2 (the rows differ: horizontal edges),
    HL = (a - b + c - d) / 2 (the columns differ), HH = (a - b - c + d) / 2. These are
    ``pytorch_wavelets``' ``DWTForward(J=1, wave="haar")`` outputs ``yl`` and ``yh[0][:, :, k]``,
    k = 0, 1, 2, scale and signs included (filters 1/sqrt(2) (1, 1) and (1, -1) per dimension).
    Shapes: (N, C, H, W) -> (N, 4C, ceil(H/2), ceil(W/2)), channels [LL | LH | HL | HH].
    """
    a, b, c, d = space_to_depth(x).unflatten(1, (-1, 4)).unbind(2)
    top_sum, bottom_sum, top_diff, bottom_diff = a + b, c + d, a - b, c - d
    bands = (top_sum + bottom_sum, top_sum - bottom_sum, top_diff + bottom_diff, top_diff - bottom_diff)
    return 0.5 * torch.cat(bands, 1)


class PhaseConvDownsample(nn.Module):
    """A lossless 2x2-to-channels ``transform`` (C -> 4C at half size), then a stride-1
    ``kernel_size`` conv 4C -> C; in the backbone (``norm`` a :func:`~detectron2.layers.get_norm`
    name, "" for none) followed by that norm and ReLU, at the FPN top levels (``norm=None``) alone.

    ``forward(x, shared=None)`` as every slot's operator (``shared``, what a LIP block hands
    both branches, is not read). Shapes: (N, C, H, W) -> (N, C, ceil(H/2), ceil(W/2)).
    """

    kernel_size = None

    def __init__(self, channels, norm=None):
        super().__init__()
        check_value("channels", channels, is_int(channels) and channels >= 1, "use a positive integer")
        in_backbone = norm is not None
        self.conv = Conv2d(
            4 * channels,
            channels,
            self.kernel_size,
            padding=self.kernel_size // 2,
            bias=not norm,
            norm=get_norm(norm, channels) if in_backbone else None,
            activation=F.relu if in_backbone else None,
        )
        # He init on fan-in keeps the second moment of a conv -> ReLU (the conv reads 4C channels,
        # so Detectron2's fan-out fill would scale it by 4); a linear slot's conv keeps it as FPN's.
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_in", nonlinearity="relu" if in_backbone else "linear")
        if self.conv.bias is not None:
            nn.init.zeros_(self.conv.bias)

    @staticmethod
    def transform(x):
        """(N, C, H, W) -> (N, 4C, ceil(H/2), ceil(W/2))."""
        raise NotImplementedError

    def forward(self, x, shared=None):
        return self.conv(self.transform(x))

    def extra_repr(self):
        return "then ReLU" if self.conv.activation else "linear"


class SPDConv(PhaseConvDownsample):
    """SPD-Conv: space-to-depth (:func:`space_to_depth`), then a 3x3 conv 4C -> C."""

    kernel_size = 3
    transform = staticmethod(space_to_depth)


class HaarDownsample(PhaseConvDownsample):
    """HWD: the Haar sub-bands (:func:`haar_subbands`), then a 1x1 conv 4C -> C."""

    kernel_size = 1
    transform = staticmethod(haar_subbands)
