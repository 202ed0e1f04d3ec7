"""What every LIP backbone shares: its options as a spec, its convs, and blocks that pool at LIP slots.

:func:`downsample_spec` turns the LIP keywords a LazyConfig-callable piece takes into a checked
:class:`~lip_det.layers.DownsampleSpec`; :class:`SlotBlock` is the base of a block that downsamples
one or more tensors at LIP slots (a LIP-ResNet block's two branches, a LIP-DenseNet transition),
sharing what it computes once from its input among its pools.
"""
import fvcore.nn.weight_init as weight_init
import torch
from detectron2.layers import CNNBlockBase, Conv2d, get_norm

from ...layers import DownsampleSpec, lean_lip2d, lean_path_applies, recomputes, run_logit_module

__all__ = ["downsample_spec", "conv_norm", "SlotBlock"]


def downsample_spec(downsample=None, **lip_options):
    """``downsample`` (a checked :class:`~lip_det.layers.DownsampleSpec`), else the spec of the keywords
    ``lip_options`` (its fields), checked now: how the LIP pieces take their options."""
    if downsample is None:
        return DownsampleSpec(**lip_options)
    if lip_options:
        raise TypeError(f"give either downsample or LIP keywords, not both: {', '.join(lip_options)}")
    return downsample


def conv_norm(in_channels, out_channels, kernel_size, norm, **kwargs):
    """A bias-free k x k Detectron2 ``Conv2d`` with 'same' padding and ``get_norm(norm)`` after it
    (none for ``norm=""``), MSRA-initialised. Shapes: (N, in, H, W) -> (N, out, H / stride, W / stride)."""
    conv = Conv2d(
        in_channels,
        out_channels,
        kernel_size=kernel_size,
        padding=kernel_size // 2,
        bias=False,
        norm=get_norm(norm, out_channels),
        **kwargs,
    )
    weight_init.c2_msra_fill(conv)
    return conv


class SlotBlock(CNNBlockBase):
    """A block that downsamples at LIP slots, its pools sharing what it computes once from its input:
    the features of ``self.logit_trunk`` (LIP with bottleneck logits), the rows and columns of
    ``self.sampler`` (S3Pool: every pool keeps the same ones, so what they pool stays aligned), or
    nothing. With ``downsample.recompute``, while autograd records, LIP's trunk, heads and lip2d run
    as one memory-lean autograd node where it applies (:func:`~lip_det.layers.lean_lip2d`); without
    gradients the modules run, so hooks on the pools (importance maps) see every call.

    Args:
        logit_channels: channels of the input the logit trunk reads.
    """

    def __init__(self, in_channels, out_channels, stride, downsample, logit_channels):
        super().__init__(in_channels, out_channels, stride)
        self.logit_trunk = downsample.logit_trunk(logit_channels)
        self.sampler = downsample.sampler()
        self.recompute_logits = downsample.recompute

    def _shared(self, x):
        if self.logit_trunk is not None:
            return run_logit_module(self.logit_trunk, x, self.recompute_logits)
        if self.sampler is not None:
            return self.sampler(x)
        return None

    def _pool(self, pools, inputs, x):
        """``pool(input, shared)`` for each pool and its input, ``shared`` computed once from ``x``."""
        if (torch.is_grad_enabled() and recomputes(self.recompute_logits, x.device)
                and self.logit_trunk is not None and lean_path_applies(pools, inputs, self.logit_trunk)):
            return lean_lip2d(pools, inputs, x, self.logit_trunk)
        shared = self._shared(x)
        return tuple(pool(t, shared) for pool, t in zip(pools, inputs))
