"""Functional LIP: a learned, input-dependent weighted average pooling.

``lip2d(x, logit) = avg_pool(x * exp(logit)) / avg_pool(exp(logit))`` (Gao et al., ICCV 2019).

Implementations (``impl=``, ``MODEL.LIP.IMPL``):
- "reference": the formula verbatim; overflows under float16 (exp(12) > 65504). For tests.
- "fused": one autograd node from PyTorch ops, float32 inside, recomputes exp in backward.
- "triton": Triton kernels for CUDA, per-window max subtraction, float32 accumulation.
- "auto": "triton" on CUDA once its kernels pass a one-time self-check there, else "fused".
"fused" and "triton" are ``torch.library`` custom ops, so ``torch.compile`` traces lip2d
without graph breaks. While tracing for export or FLOP counting (``torch.jit.trace``,
``torch.export``, and the ONNX exporters built on either) every impl but "reference" runs
:func:`lip2d_stable`, the overflow-free formula in plain ops that ONNX and TorchScript have.
"""
import torch.nn.functional as F

from ..tracing import is_exporting
from .auto import auto_impl
from .fused import lip2d_stable
from .op import lip2d_op

__all__ = ["LIP_IMPLS", "lip2d", "lip2d_reference"]

LIP_IMPLS = ("auto", "reference", "fused", "triton")
"""Names accepted by ``lip2d(..., impl=)`` and ``MODEL.LIP.IMPL``."""


def lip2d_reference(x, logit, kernel=3, stride=2, padding=1):
    """The paper's formula, verbatim.

    Args:
        x: (N, C, H, W) features.
        logit: (N, C, H, W) or (N, 1, H, W) importance logits (broadcast over channels).
    Returns:
        (N, C, H', W') with H', W' exactly as ``F.avg_pool2d(x, kernel, stride, padding)``.
    """
    weight = logit.exp()
    return F.avg_pool2d(x * weight, kernel, stride, padding) / F.avg_pool2d(
        weight, kernel, stride, padding
    )


def _check_inputs(x, logit, kernel, stride, padding):
    if x.dim() != 4 or logit.dim() != 4:
        raise ValueError(
            f"lip2d: expects 4-D (N, C, H, W) tensors, got x {tuple(x.shape)} "
            f"and logit {tuple(logit.shape)}"
        )
    if logit.shape[0] != x.shape[0] or logit.shape[1] not in (1, x.shape[1]) or logit.shape[2:] != x.shape[2:]:
        raise ValueError(
            f"lip2d: logit {tuple(logit.shape)} must be (N, C, H, W) or (N, 1, H, W) "
            f"for x {tuple(x.shape)}"
        )
    _check_window(x.shape[2:], kernel, stride, padding)


def _check_window(size, kernel, stride, padding):
    if not (kernel >= 1 and stride >= 1 and 0 <= padding <= kernel // 2):
        raise ValueError(
            f"lip2d: kernel={kernel}, stride={stride}, padding={padding} is not a valid window; "
            "use kernel, stride >= 1 and 0 <= padding <= kernel // 2"
        )
    if min(size) + 2 * padding < kernel:
        raise ValueError(
            f"lip2d: input {size[0]}x{size[1]} is too small for kernel {kernel} with padding "
            f"{padding}; use a larger input or a smaller kernel"
        )


def lip2d(x, logit, kernel=3, stride=2, padding=1, impl="auto"):
    """Local importance-based pooling of ``x`` weighted by ``exp(logit)``.

    Args:
        x: (N, C, H, W) features.
        logit: (N, C, H, W) or (N, 1, H, W) importance logits.
        impl: one of :data:`LIP_IMPLS`; "auto" picks the best one for the device.
    Returns:
        (N, C, H', W'), the same size as ``F.avg_pool2d(x, kernel, stride, padding)``.
    """
    if impl not in LIP_IMPLS:
        raise ValueError(f"lip2d: unknown impl {impl!r}; choose one of {', '.join(LIP_IMPLS)}")
    if is_exporting():
        traceable = lip2d_reference if impl == "reference" else lip2d_stable
        return traceable(x, logit, kernel, stride, padding)
    _check_inputs(x, logit, kernel, stride, padding)
    if impl == "reference":
        return lip2d_reference(x, logit, kernel, stride, padding)
    if impl == "auto":
        impl = auto_impl(x.device, x.dtype, logit.dtype)
    return lip2d_op(x, logit, kernel, stride, padding, impl)
