"""Functional LIP: a learned, input-dependent weighted average pooling.

``lip2d(x, logit) = avg_pool(x * exp(logit)) / avg_pool(exp(logit))`` (Gao et al., ICCV 2019).
"""
import torch
import torch.nn.functional as F

__all__ = ["LIP_IMPLS", "lip2d", "lip2d_reference"]

LIP_IMPLS = ("auto", "reference")
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
    if x.dim() != 4 or logit.dim() != 4:
        raise ValueError(
            f"lip2d: expects 4-D (N, C, H, W) tensors, got x {tuple(x.shape)} "
            f"and logit {tuple(logit.shape)}"
        )
    return lip2d_reference(x, logit, kernel, stride, padding)
