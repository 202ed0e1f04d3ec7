"""The downsampler at a LIP slot: which operator (``MODEL.LIP.POOLING``) and how it is built.

A LIP slot is a place where LIP-ResNet downsamples: the stem (the vanilla 3x3/2 max-pool),
the residual branch and the shortcut of the first block of res3-res5, and the FPN top
levels. Every operator gives ``F.avg_pool2d(x, 3, 2, 1)``'s output size there, so changing
``POOLING`` changes nothing else in the network. Only ``lip`` has logit modules (and
parameters); the other operators are parameter-free.
"""
import dataclasses
from typing import Optional

from .blur_pool import BLUR_FILTER_SIZES, BlurPool
from .checks import LIPConfigError, check_choice, check_value, is_int, is_number
from .lip import LIP, LOGIT_MODULES
from .lip2d import LIP_IMPLS
from .logit import LOGIT_NORMS, ConvLogit, SharedLogitTrunk
from .s3pool import S3Pool, S3Sampler
from .stochastic_pool import StochasticPool
from .window_pool import AvgPool, LpPool, MaxPool, MinPool, SoftPool, SumPool

__all__ = [
    "POOLINGS", "WEIGHTED_POOLS", "DownsampleSpec", "CONFIG_KEYS", "check_downsample_options", "build_parameter_free_pool",
]

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


def check_downsample_options(options, key=str):
    """Raises :class:`LIPConfigError` (one line) on the first bad value of ``options``.

    Args:
        options: every field of :class:`DownsampleSpec` (name -> value).
        key: spells a field as its user wrote it (``lambda name: "MODEL.LIP." + CONFIG_KEYS[name]``).
    """
    check_choice(key("pooling"), options["pooling"], POOLINGS)
    check_choice(key("logit_module"), options["logit_module"], LOGIT_MODULES)
    check_choice(key("logit_norm"), options["logit_norm"], LOGIT_NORMS)
    width = options["logit_width"]
    check_value(key("logit_width"), width, is_int(width) and width >= 1, "use a positive integer (official: 128)")
    if options["logit_norm"] == "GN" and width % 32:
        raise LIPConfigError(
            f"{key('logit_width')} = {width} does not divide into 32 groups for "
            f"{key('logit_norm')} = 'GN'; use a multiple of 32"
        )
    coeff = options["coeff"]
    check_value(key("coeff"), coeff, is_number(coeff) and 0 < coeff <= 30, "use a number in (0, 30] (official: 12)")
    check_choice(key("impl"), options["impl"], LIP_IMPLS)
    check_choice(key("recompute"), options["recompute"], (None, True, False))
    lp_p, grid, blur = options["lp_p"], options["s3pool_grid"], options["blur_filter"]
    check_value(key("lp_p"), lp_p, is_number(lp_p) and lp_p >= 1,
                "use a finite number >= 1 (1 = average pooling, larger tends to max pooling)")
    check_value(key("s3pool_grid"), grid, is_int(grid) and grid >= 2 and grid % 2 == 0,
                "use an even integer >= 2 (each g x g grid keeps g/2 rows and columns)")
    check_value(key("blur_filter"), blur, is_int(blur) and blur in BLUR_FILTER_SIZES,
                f"use an integer in {BLUR_FILTER_SIZES.start}..{BLUR_FILTER_SIZES.stop - 1}")


@dataclasses.dataclass(frozen=True)
class DownsampleSpec:
    """What every LIP slot of a network does (mirrors ``cfg.MODEL.LIP``; :data:`CONFIG_KEYS`).

    ``pooling`` picks the operator; the logit fields describe LIP's logit modules (used
    only by ``"lip"``), ``lp_p`` / ``s3pool_grid`` / ``blur_filter`` parametrise ``"lp"``,
    ``"s3pool"`` and ``"blur"``. A bad value raises :class:`LIPConfigError` (a ``ValueError``).
    """

    pooling: str = "lip"
    logit_module: str = "bottleneck"
    logit_width: int = 128
    logit_norm: str = "IN"
    coeff: float = 12.0
    impl: str = "auto"
    recompute: Optional[bool] = None
    lp_p: float = 3.0
    s3pool_grid: int = 4
    blur_filter: int = 3

    def __post_init__(self):
        check_downsample_options(dataclasses.asdict(self))

    @classmethod
    def from_config(cls, cfg):
        return cls(**{name: cfg.MODEL.LIP[key] for name, key in CONFIG_KEYS.items()})

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


CONFIG_KEYS = {field.name: field.name.upper() for field in dataclasses.fields(DownsampleSpec)}
CONFIG_KEYS["recompute"] = "RECOMPUTE_LOGITS"
"""The ``MODEL.LIP`` key of each :class:`DownsampleSpec` field."""
