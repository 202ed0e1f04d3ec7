"""Stochastic pooling (Zeiler & Fergus, ICLR 2013) at LIP's 3x3/2 slot.

Training picks one activation per window with probability ``a_i / sum(a)``; evaluation
returns the probability-weighted average ``sum(a_i^2) / sum(a_i)``, deterministic.

The probabilities need non-negative activations, so the operator pools ``a = relu(x)``.
At the backbone's slots this changes nothing: the stem, the residual branch (after
conv1 -> BN -> ReLU) and the shortcut (a block output) all pool post-ReLU features. Only
the FPN top levels (``FPN_TOP_BLOCK``) see signed features; there negative values count as
0, as they would after a ReLU. A window of zeros gives 0.
"""
import torch

from .tracing import check_exportable
from .window_pool import WindowPool, plane_share, pool_windows, upcast

__all__ = ["stochastic_pool2d", "StochasticPool"]


def stochastic_pool2d(x, training, kernel=3, stride=2, padding=1):
    """Stochastic pooling of ``relu(x)``; draws from torch's default generator when training.

    Args:
        x: (N, C, H, W) features.
        training: sample (True) or take the probability-weighted average (False).
    Returns:
        (N, C, H', W') in the dtype of ``x``, H', W' as ``F.avg_pool2d(x, kernel, stride, padding)``.
    """
    windows, _ = pool_windows(upcast(x).relu(), kernel, stride, padding)
    if training:
        # Inverse CDF: the first position whose cumulative weight exceeds u * total.
        cumulative = windows.cumsum(2)
        threshold = torch.rand_like(cumulative[:, :, :1]) * cumulative[:, :, -1:]
        picked = (cumulative <= threshold).sum(2, keepdim=True).clamp_max(windows.shape[2] - 1)
        out = windows.gather(2, picked)
    else:
        total = windows.sum(2, keepdim=True)
        out = windows.square().sum(2, keepdim=True) / torch.where(total > 0, total, torch.ones_like(total))
    return out.squeeze(2).to(x.dtype)


class StochasticPool(WindowPool):
    """Samples ``a_i`` with probability ``a_i / sum(a)`` in training, ``sum(a^2) / sum(a)`` in eval."""

    def pool(self, x):
        check_exportable("stochastic", self.training)
        return stochastic_pool2d(x, self.training, *self.window)

    def importance(self, x, shared=None):
        """``relu(x)``, each plane scaled to a max of 1: proportional to the sampling probabilities."""
        return plane_share(upcast(x).relu())
