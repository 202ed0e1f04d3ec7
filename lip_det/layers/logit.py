"""Logit modules: they turn features into LIP importance logits in ``[0, coeff]``."""
import fvcore.nn.weight_init as weight_init
import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "LOGIT_NORMS",
    "InstanceNorm",
    "SoftGate",
    "get_logit_norm",
    "ConvLogit",
    "SharedLogitTrunk",
]

LOGIT_NORMS = ("IN", "GN", "")
"""Normalisations a logit module accepts: InstanceNorm (official), GroupNorm(32), none."""


class InstanceNorm(nn.InstanceNorm2d):
    """Affine InstanceNorm2d computed as a group norm with one group per channel: the same
    values in one kernel each way (``F.instance_norm`` runs batch norm on a reshaped input,
    with repeated affine parameters). Shapes: (N, C, H, W) -> (N, C, H, W)."""

    def __init__(self, channels):
        super().__init__(channels, affine=True)

    def forward(self, x):
        return F.group_norm(x, self.num_features, self.weight, self.bias, self.eps)


def get_logit_norm(norm, channels):
    """Returns the normalisation layer named by ``norm`` (one of :data:`LOGIT_NORMS`) or None."""
    if norm == "IN":
        return InstanceNorm(channels)
    if norm == "GN":
        return nn.GroupNorm(32, channels)
    if norm == "":
        return None
    raise ValueError(f"logit norm {norm!r} is not one of {LOGIT_NORMS}")


class SoftGate(nn.Module):
    """``coeff * sigmoid(z)``: bounds logits to ``[0, coeff]`` so ``exp`` cannot blow up."""

    def __init__(self, coeff=12.0):
        super().__init__()
        self.coeff = float(coeff)

    def forward(self, z):
        return torch.sigmoid(z) * self.coeff

    def extra_repr(self):
        return f"coeff={self.coeff}"


class ConvLogit(nn.Module):
    """conv(k x k, no bias) -> norm -> gate; its conv starts at zero, so logits start flat.

    With ``kernel_size=3`` and ``in == out`` this is the official stem logit module; with
    ``kernel_size=1`` it is a per-branch head on a :class:`SharedLogitTrunk`, or a cheap
    projection head straight on the features.

    Shapes: (N, in_channels, H, W) -> (N, out_channels, H, W).
    """

    def __init__(self, in_channels, out_channels, kernel_size=3, norm="IN", coeff=12.0):
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False
        )
        self.norm = get_logit_norm(norm, out_channels)
        self.gate = SoftGate(coeff)
        nn.init.zeros_(self.conv.weight)

    def forward(self, x):
        z = self.conv(x)
        if self.norm is not None:
            z = self.norm(z)
        return self.gate(z)


class SharedLogitTrunk(nn.Module):
    """The official bottleneck logit trunk, run once per LIP block and shared by its heads.

    conv1x1(in -> width) -> norm -> ReLU -> conv3x3(width -> width) -> norm -> ReLU.
    Shapes: (N, in_channels, H, W) -> (N, width, H, W).
    """

    def __init__(self, in_channels, width=128, norm="IN"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.norm1 = get_logit_norm(norm, width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.norm2 = get_logit_norm(norm, width)
        for conv in (self.conv1, self.conv2):
            weight_init.c2_msra_fill(conv)

    def forward(self, x):
        for conv, norm in ((self.conv1, self.norm1), (self.conv2, self.norm2)):
            x = conv(x)
            if norm is not None:
                x = norm(x)
            x = F.relu(x)
        return x
