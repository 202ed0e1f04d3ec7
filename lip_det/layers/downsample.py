"""The downsampler at a LIP slot: which operator (``MODEL.LIP.POOLING``) and how it is built.

A LIP slot is a place where LIP-ResNet downsamples: the stem (the vanilla 3x3/2 max-pool),
the residual branch and the shortcut of the first block of res3-res5, and the FPN top
levels. Every operator gives ``F.avg_pool2d(x, 3, 2, 1)``'s output size there, so changing
``POOLING`` changes nothing else in the network. Only ``lip`` has logit modules (and
parameters); the other operators are parameter-free.
"""
from dataclasses import dataclass

from .blur_pool import BlurPool
from .lip import LIP
from .logit import ConvLogit, SharedLogitTrunk
from .s3pool import S3Pool, S3Sampler
from .stochastic_pool import StochasticPool
from .window_pool import AvgPool, LpPool, MaxPool, MinPool, SoftPool, SumPool

__all__ = ["POOLINGS", "WEIGHTED_POOLS", "DownsampleSpec", "build_parameter_free_pool"]

_PARAMETER_FREE_POOLS = {
    "softpool": lambda spec: SoftPool(),
    "max": lambda spec: MaxPool(),
    "avg": lambda spec: AvgPool(),
    "min": lambda spec: MinPool(),
    "sum": lambda spec: SumPool(),
    "l2": lambda spec: LpPool(2.0),
    "lp": lambda spec: LpPool(spec.lp_p),
    "stochastic": lambda spec: StochasticPool(),
    "s3pool": lambda spec: S3Pool(spec.s3pool_grid),
    "blur": lambda spec: BlurPool(spec.blur_filter),
}

POOLINGS = ("lip",) + tuple(_PARAMETER_FREE_POOLS)
"""Values of ``MODEL.LIP.POOLING``; docs/pooling.md describes each one."""


WEIGHTED_POOLS = (LIP, SoftPool, LpPool, StochasticPool)
"""Pools that weigh each input position (``importance(x, shared)``: (N, C, H, W) weights)."""


def build_parameter_free_pool(spec):
    """The module for ``spec.pooling`` (any of :data:`POOLINGS` but ``"lip"``)."""
    if spec.pooling not in _PARAMETER_FREE_POOLS:
        raise ValueError(
            f"pooling {spec.pooling!r} has no parameter-free module; choose one of "
            f"{', '.join(_PARAMETER_FREE_POOLS)}"
        )
    return _PARAMETER_FREE_POOLS[spec.pooling](spec)


@dataclass(frozen=True)
class DownsampleSpec:
    """What every LIP slot of a network does (mirrors ``cfg.MODEL.LIP``).

    ``pooling`` picks the operator; the logit fields describe LIP's logit modules (used
    only by ``"lip"``), ``lp_p`` / ``s3pool_grid`` / ``blur_filter`` parametrise ``"lp"``,
    ``"s3pool"`` and ``"blur"``.
    """

    pooling: str = "lip"
    logit_module: str = "bottleneck"
    logit_width: int = 128
    logit_norm: str = "IN"
    coeff: float = 12.0
    impl: str = "auto"
    recompute: bool = True
    lp_p: float = 3.0
    s3pool_grid: int = 4
    blur_filter: int = 3

    @classmethod
    def from_config(cls, cfg):
        lip = cfg.MODEL.LIP
        return cls(
            lip.POOLING, lip.LOGIT_MODULE, lip.LOGIT_WIDTH, lip.LOGIT_NORM, lip.COEFF, lip.IMPL,
            lip.RECOMPUTE_LOGITS, lip.LP_P, lip.S3POOL_GRID, lip.BLUR_FILTER,
        )

    @property
    def is_lip(self):
        return self.pooling == "lip"

    def single_pool(self, channels):
        """The downsampler of a slot with one input (stem, FPN top levels).

        LIP: its logit is ``ConvLogit(channels -> channels, 3x3)`` on its own input.
        """
        if not self.is_lip:
            return build_parameter_free_pool(self)
        return self._lip(channels, channels, 3)

    def logit_trunk(self, in_channels):
        """A block's shared logit trunk: LIP with ``"bottleneck"`` logits, else None."""
        if self.is_lip and self.logit_module == "bottleneck":
            return SharedLogitTrunk(in_channels, self.logit_width, self.logit_norm)
        return None

    def sampler(self):
        """A block's shared S3Pool sampler (both branches keep the same rows), else None."""
        return S3Sampler(self.s3pool_grid) if self.pooling == "s3pool" else None

    def branch_pool(self, channels):
        """The downsampler of one branch of a block.

        LIP: its 1x1 logit head reads the block's trunk (or, with ``"projection"`` logits,
        the branch itself).
        """
        if not self.is_lip:
            return build_parameter_free_pool(self)
        head_in = self.logit_width if self.logit_module == "bottleneck" else channels
        return self._lip(head_in, channels, 1)

    def _lip(self, logit_in, channels, kernel_size):
        logit = ConvLogit(logit_in, channels, kernel_size, self.logit_norm, self.coeff)
        return LIP(logit, impl=self.impl, recompute=self.recompute)
