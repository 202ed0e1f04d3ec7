"""LIP building blocks: the functional op, logit modules, the LIP module and the other
downsamplers a LIP slot can hold (``MODEL.LIP.POOLING``)."""
from .blur_pool import BLUR_FILTER_SIZES, BlurPool, binomial_filter, blur_pool2d
from .checks import LIPConfigError
from .downsample import (
    LEARNED_OPERATORS,
    MODEL_LIP_KEYS,
    POOLING_OPERATORS,
    POOLINGS,
    POOLS_WITH_IMPORTANCE,
    SLOT_WINDOW,
    DownsampleSpec,
    create_pool,
)
from .learned_downsample import HaarDownsample, PhaseConvDownsample, SPDConv, haar_subbands, pad_to_even, space_to_depth
from .lip import LIP, LOGIT_MODULES, RECOMPUTE_DEVICES, recomputes, run_logit_module
from .lip2d import LIP_IMPLS, gated_lip2d, lean_lip2d, lean_path_applies, lip2d, lip2d_reference
from .logit import LOGIT_NORMS, ConvLogit, SharedLogitTrunk, SoftGate, get_logit_norm
from .s3pool import S3Pool, S3Sample, S3Sampler, s3_pool2d, s3pool_sample
from .tracing import check_exportable, is_exporting
from .stochastic_pool import StochasticPool, stochastic_pool2d
from .window_pool import (
    AvgPool,
    L2Pool,
    LpPool,
    MaxPool,
    MinPool,
    ParameterFreePool,
    SoftPool,
    SumPool,
    WindowPool,
    lp_pool2d,
    max_pool2x2_stride1,
    min_pool2d,
    pool_windows,
    soft_pool2d,
    sum_pool2d,
)

__all__ = [k for k in globals().keys() if not k.startswith("_")]
