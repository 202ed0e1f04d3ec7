"""The downsampler at a LIP slot: which operator (``MODEL.LIP.POOLING``) and how it is built.

A LIP slot is a place where a LIP backbone downsamples: the stem (the vanilla 3x3/2 max-pool),
the residual branch and the shortcut of the first block of LIP-ResNet's res3-res5, the
transitions of LIP-DenseNet (the vanilla 2x2/2 average pooling), and the FPN top levels. Each
slot has a window, (kernel, stride, padding): :data:`SLOT_WINDOW` (3x3/2, padding 1) but at
DenseNet's transitions (2x2/2). Every operator gives ``F.avg_pool2d`` over that window's output
size (S3Pool, BlurPool, SPD-Conv and HWD, which step over 2x2 phases, give ``ceil(H / 2)``: the
same on even sizes), so changing ``POOLING`` changes nothing else in the network. ``lip`` has
logit modules; the learned downsamplers of :data:`LEARNED_OPERATORS` (SPD-Conv, HWD) have a conv
built for the slot's channels and norm; the other operators are parameter-free and come from
:data:`POOLING_OPERATORS` through :func:`create_pool`, as timm's ``create_pool2d`` maps its pool
types to layers.
"""
import dataclasses
from typing import Callable, Optional

from .blur_pool import BlurPool, check_blur_filter
from .checks import LIPConfigError, check_choice, check_value, is_int, is_number
from .learned_downsample import HaarDownsample, SPDConv
from .lip import LIP, LOGIT_MODULES
from .lip2d import LIP_IMPLS
from .logit import LOGIT_NORMS, ConvLogit, SharedLogitTrunk
from .s3pool import S3Pool, S3Sampler, check_s3pool_grid
from .stochastic_pool import StochasticPool
from .window_pool import AvgPool, L2Pool, LpPool, MaxPool, MinPool, SoftPool, SumPool, check_lp_p

__all__ = [
    "POOLING_OPERATORS", "LEARNED_OPERATORS", "POOLINGS", "POOLS_WITH_IMPORTANCE", "SLOT_WINDOW", "DownsampleSpec",
    "MODEL_LIP_KEYS", "create_pool",
]

SLOT_WINDOW = (3, 2, 1)
"""(kernel, stride, padding) of a slot where the vanilla network max-pools 3x3/2 or strides a conv."""

POOLING_OPERATORS = {
    "softpool": SoftPool,
    "max": MaxPool,
    "avg": AvgPool,
    "min": MinPool,
    "sum": SumPool,
    "l2": L2Pool,
    "lp": LpPool,
    "stochastic": StochasticPool,
    "s3pool": S3Pool,
    "blur": BlurPool,
}
"""``MODEL.LIP.POOLING`` name -> class of each parameter-free operator; each class builds itself
from a :class:`DownsampleSpec` (``from_spec``), reading the option it takes (``lp_p``, ...)."""

LEARNED_OPERATORS = {
    "spd": SPDConv,
    "haar": HaarDownsample,
}
"""``MODEL.LIP.POOLING`` name -> class of each learned downsampler; each is built for its slot,
``cls(channels, norm)``: the slot's channel count and its neighbours' norm (None outside the
backbone); see :class:`~lip_det.layers.learned_downsample.PhaseConvDownsample`."""

POOLINGS = ("lip",) + tuple(POOLING_OPERATORS) + tuple(LEARNED_OPERATORS)
"""Values of ``MODEL.LIP.POOLING``; docs/pooling.md describes each one."""

POOLS_WITH_IMPORTANCE = (LIP, SoftPool, LpPool, StochasticPool)
"""Pools that weigh each input position (``importance(x, shared)``: (N, C, H, W) weights)."""


def create_pool(spec, window=SLOT_WINDOW):
    """The parameter-free operator ``spec.pooling`` names (any of :data:`POOLINGS` but ``"lip"``) at a
    slot of ``window`` (kernel, stride, padding)."""
    if spec.pooling not in POOLING_OPERATORS:
        raise ValueError(
            f"pooling {spec.pooling!r} has no parameter-free module; choose one of {', '.join(POOLING_OPERATORS)}"
        )
    return POOLING_OPERATORS[spec.pooling].from_spec(spec, window)


@dataclasses.dataclass(frozen=True)
class DownsampleSpec:
    """What every LIP slot of a network does (mirrors ``cfg.MODEL.LIP``: :data:`MODEL_LIP_KEYS`).

    ``pooling`` picks the operator; the logit fields describe LIP's logit modules (used
    only by ``"lip"``), ``lp_p`` / ``s3pool_grid`` / ``blur_filter`` parametrise ``"lp"``,
    ``"s3pool"`` and ``"blur"``. Values are checked once, here: a bad one raises
    :class:`LIPConfigError` (a ``ValueError``) in one line naming the option as the user wrote
    it, ``spelling(field)``: the field itself by default, ``MODEL.LIP.<KEY>`` from
    :meth:`from_config`, the LazyConfig path before a LazyConfig run launches.
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
    spelling: dataclasses.InitVar[Optional[Callable[[str], str]]] = None

    def __post_init__(self, spelling):
        key = spelling or str
        check_choice(key("pooling"), self.pooling, POOLINGS)
        object.__setattr__(self, "_pooling_key", key("pooling"))  # named when a learned operator cannot take a slot
        check_choice(key("logit_module"), self.logit_module, LOGIT_MODULES)
        check_choice(key("logit_norm"), self.logit_norm, LOGIT_NORMS)
        width = self.logit_width
        check_value(key("logit_width"), width, is_int(width) and width >= 1, "use a positive integer (official: 128)")
        if self.logit_norm == "GN" and width % 32:
            raise LIPConfigError(
                f"{key('logit_width')} = {width} does not divide into 32 groups for "
                f"{key('logit_norm')} = 'GN'; use a multiple of 32"
            )
        coeff = self.coeff
        check_value(key("coeff"), coeff, is_number(coeff) and 0 < coeff <= 30, "use a number in (0, 30] (official: 12)")
        check_choice(key("impl"), self.impl, LIP_IMPLS)
        check_choice(key("recompute"), self.recompute, (None, True, False))
        check_lp_p(key("lp_p"), self.lp_p)
        check_s3pool_grid(key("s3pool_grid"), self.s3pool_grid)
        check_blur_filter(key("blur_filter"), self.blur_filter)

    @classmethod
    def from_config(cls, cfg):
        """The spec of ``cfg.MODEL.LIP``, its values checked under their ``MODEL.LIP`` keys."""
        values = {name: cfg.MODEL.LIP[key] for name, key in MODEL_LIP_KEYS.items()}
        return cls(**values, spelling=lambda name: f"MODEL.LIP.{MODEL_LIP_KEYS[name]}")

    @property
    def is_lip(self):
        return self.pooling == "lip"

    def single_pool(self, channels, norm=None):
        """The downsampler of a 3x3/2 slot with one input (stem, FPN top levels).

        ``norm``: the norm of the slot's backbone neighbours (``MODEL.RESNETS.NORM``), None
        outside the backbone; only learned operators read it (:data:`LEARNED_OPERATORS`).
        LIP: its logit is ``ConvLogit(channels -> channels, 3x3)`` on its own input.
        """
        if not self.is_lip:
            return self._operator(channels, norm, SLOT_WINDOW)
        return self._lip(channels, channels, 3, SLOT_WINDOW)

    def logit_trunk(self, in_channels):
        """A block's shared logit trunk: LIP with ``"bottleneck"`` logits, else None."""
        if self.is_lip and self.logit_module == "bottleneck":
            return SharedLogitTrunk(in_channels, self.logit_width, self.logit_norm)
        return None

    def sampler(self):
        """A block's shared S3Pool sampler (both branches keep the same rows), else None."""
        return S3Sampler(self.s3pool_grid) if self.pooling == "s3pool" else None

    def branch_pool(self, channels, norm=None, window=SLOT_WINDOW):
        """The downsampler of one branch of a block, over ``window`` (kernel, stride, padding);
        ``norm`` as :meth:`single_pool`'s.

        LIP: its 1x1 logit head reads the block's trunk (or, with ``"projection"`` logits,
        the branch itself).
        """
        if not self.is_lip:
            return self._operator(channels, norm, window)
        head_in = self.logit_width if self.logit_module == "bottleneck" else channels
        return self._lip(head_in, channels, 1, window)

    def _operator(self, channels, norm, window):
        """Any operator but LIP: parameter-free, or learned for ``channels`` and ``norm``."""
        if self.pooling not in LEARNED_OPERATORS:
            return create_pool(self, window)
        try:
            return LEARNED_OPERATORS[self.pooling](channels, norm)
        except ValueError as err:  # a channel count the operator or the norm cannot take
            others = [name for name in POOLINGS if name not in LEARNED_OPERATORS]
            raise LIPConfigError(
                f"{self._pooling_key} = {self.pooling!r} cannot take a slot of {channels!r} channels with norm "
                f"{norm!r} ({err}); allowed values for this slot: {', '.join(map(repr, others))}"
            ) from None

    def _lip(self, logit_in, channels, kernel_size, window):
        logit = ConvLogit(logit_in, channels, kernel_size, self.logit_norm, self.coeff)
        return LIP(logit, *window, impl=self.impl, recompute=self.recompute)


MODEL_LIP_KEYS = {field.name: field.name.upper() for field in dataclasses.fields(DownsampleSpec)}
MODEL_LIP_KEYS["recompute"] = "RECOMPUTE_LOGITS"
"""The ``MODEL.LIP`` key of each :class:`DownsampleSpec` field."""
