"""lip2d, the LIP operator, and its backends.

:mod:`.math` holds the forward and backward formulas; the backends compute them:
"reference" (:mod:`.functional`, the formula verbatim), "fused" (:mod:`.fused`, PyTorch ops),
"triton" (:mod:`.triton_kernels`), a LIP block's memory-lean node (:mod:`.lean`, CPU) and a
LIP head's gated kernels (:mod:`.gated`, CUDA). :mod:`.op` makes them custom ops and
:mod:`.auto` picks one per device.
"""
from .functional import LIP_IMPLS, lip2d, lip2d_reference
from .gated import gated_lip2d, gated_norm_applies
from .lean import lean_lip2d, lean_path_applies
from .math import Window, compute_dtype, pooled_shape, window_average, window_average_transposed

__all__ = [
    "LIP_IMPLS",
    "lip2d",
    "lip2d_reference",
    "gated_lip2d",
    "gated_norm_applies",
    "lean_lip2d",
    "lean_path_applies",
    "Window",
    "compute_dtype",
    "pooled_shape",
    "window_average",
    "window_average_transposed",
]
