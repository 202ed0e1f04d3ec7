"""What ``impl="auto"`` runs: Triton on CUDA once its kernels pass a self-check, else "fused".

The self-check runs once per (device, x dtype, logit dtype), on the first lip2d call there:
it compiles and runs Triton's forward and backward on small tensors and compares them with
"fused". If compiling or running fails, or the results differ, one warning names the error
and "auto" runs "fused" there from then on.
"""
import functools
import logging
import subprocess

import torch

from . import triton_kernels
from .math import pooled_shape
from .op import KERNELS

__all__ = ["AUTO_TRITON_DEVICES", "auto_impl", "triton_passes_self_check", "triton_self_check"]

logger = logging.getLogger(__name__)

AUTO_TRITON_DEVICES = ("cuda",)
"""Device types on which "auto" considers Triton (its CPU interpreter is far too slow to pick)."""

_CHECK_SHAPE = (2, 3, 9, 10)
_CHECK_WINDOW = (3, 2, 1)
_CHECK_TOLERANCE = {torch.float16: 1e-2, torch.bfloat16: 5e-2, torch.float32: 1e-4, torch.float64: 1e-10}
"""Atol and rtol per result dtype: a few roundings of that dtype; broken kernels miss by far more."""

# What a Triton compile or launch failure raises, so the self-check reports it instead of crashing:
# - triton.TritonError: CompilationError, OutOfResources, PTXASError, AutotunerError;
# - RuntimeError: MLIR pass failures (C++ exceptions), a missing C compiler for the launcher,
#   CUDA driver errors ("Triton Error [CUDA]: ..."), torch.AcceleratorError;
# - subprocess.CalledProcessError: the launcher's C build or `ptxas --version` failing;
# - OSError: ptxas or a built launcher library that cannot be found or loaded;
# - AssertionError: Triton asserts that libcuda.so can be found.
# RuntimeError is broad, so the warning carries the full type and message of what was caught.
_TRITON_FAILURES = (
    (triton_kernels.triton.TritonError, RuntimeError, subprocess.CalledProcessError, OSError, AssertionError)
    if triton_kernels.triton is not None else ()
)


def triton_self_check(device, x_dtype, logit_dtype):
    """Triton's forward and backward against "fused" on small inputs on ``device``.

    Returns:
        None when every result (output, grad x, grad logit) agrees within
        :data:`_CHECK_TOLERANCE`, else a one-line description of the first that does not.
        Compile and launch errors propagate.
    """
    gen = torch.Generator(device).manual_seed(0)
    x = torch.randn(_CHECK_SHAPE, generator=gen, device=device).to(x_dtype)
    logit = (12 * torch.rand(_CHECK_SHAPE, generator=gen, device=device)).to(logit_dtype)
    out_shape = pooled_shape(x, *_CHECK_WINDOW)
    grad = torch.randn(out_shape, generator=gen, device=device).to(torch.promote_types(x_dtype, logit_dtype))
    results = {}
    for impl in ("triton", "fused"):
        forward, backward = KERNELS[impl]
        out, saved = forward(x, logit, *_CHECK_WINDOW)
        results[impl] = (out, *backward(grad, x, logit, out, saved, *_CHECK_WINDOW))
    for name, got, want in zip(("output", "grad x", "grad logit"), results["triton"], results["fused"]):
        tol = _CHECK_TOLERANCE[want.dtype]
        if got.shape != want.shape or got.dtype != want.dtype:
            return f"its {name} is {got.dtype} {tuple(got.shape)}, not {want.dtype} {tuple(want.shape)}"
        if not torch.allclose(got, want, rtol=tol, atol=tol):  # one host sync, once per device and dtypes
            error = (got.double() - want.double()).abs().max().item()
            return f"its {name} differs from 'fused' by up to {error:.3g} (tolerance {tol:g})"
    return None


@functools.lru_cache(maxsize=None)
def triton_passes_self_check(device, x_dtype, logit_dtype):
    """:func:`triton_self_check`, run once per arguments; on failure, logs one warning line."""
    try:
        failure = triton_self_check(device, x_dtype, logit_dtype)
    except _TRITON_FAILURES as exc:
        failure = f"{type(exc).__module__}.{type(exc).__qualname__}: {' '.join(str(exc).split())}"
    if failure is not None:
        logger.warning("lip2d: the Triton kernels failed their self-check on %s (x %s, logit %s): %s; "
                       "impl 'auto' uses 'fused' there", device, x_dtype, logit_dtype, failure)
    return failure is None


@torch.compiler.assume_constant_result  # torch.compile runs it while tracing and keeps the answer
def auto_impl(device, x_dtype, logit_dtype):
    """The impl "auto" runs for tensors on ``device``: "triton" or "fused"."""
    if (device.type in AUTO_TRITON_DEVICES and triton_kernels.triton_usable(device)
            and triton_passes_self_check(device, x_dtype, logit_dtype)):
        return "triton"
    return "fused"
