"""lip2d's "fused" and "triton" impls as ``torch.library`` custom ops.

``lip_det::lip2d_forward`` and ``lip_det::lip2d_backward`` are opaque to ``torch.compile``:
it traces them from their fake (shape-only) kernels without graph breaks and calls the real
ones at run time. Both return contiguous tensors, as their fake kernels say.
``lip_det::gated_lip2d_forward`` / ``_backward`` are the Triton kernels with gated logits
(:mod:`.gated`): one launch each.
"""
from typing import NamedTuple, Optional

import torch
from torch import Tensor

from .fused import fused_backward, fused_forward
from .math import compute_dtype, pooled_shape
from .triton_kernels import triton_backward, triton_forward

__all__ = ["KERNELS", "lip2d_op", "TRITON_OPS"]

class Gate(NamedTuple):
    """Gated logits ``coeff * sigmoid(z * scale + shift)``; scale and shift (N, C) or None (1, 0)."""

    scale: Optional[Tensor]
    shift: Optional[Tensor]
    coeff: float


KERNELS = {
    "fused": (fused_forward, fused_backward),
    "triton": (triton_forward, triton_backward),
}
"""impl -> (forward(x, logit, kernel, stride, padding) -> (out, saved),
backward(grad_out, x, logit, out, saved, kernel, stride, padding) -> (grad_x, grad_logit)),
where ``saved`` is the list of tensors backward needs beyond x, logit and out."""


def _saved_like(x, logit, out, impl):
    """Empty tensors shaped as ``impl``'s saved list: fused's pooled weights and per-plane
    exponent shifts, triton's per-window log-sum-exps."""
    n, c, h, w = out.shape
    dtype = compute_dtype(x)
    if impl == "fused":
        planes = (n, logit.shape[1])
        return [x.new_empty(planes + (h, w), dtype=dtype), x.new_empty(planes + (1, 1), dtype=dtype)]
    return [x.new_empty((n, c, h, w), dtype=dtype)]


@torch.library.custom_op("lip_det::lip2d_forward", mutates_args=())
def _forward(x: Tensor, logit: Tensor, kernel: int, stride: int, padding: int, impl: str) -> list[Tensor]:
    forward, _ = KERNELS[impl]
    out, saved = forward(x, logit, kernel, stride, padding)
    return [t.contiguous() for t in (out, *saved)]


@_forward.register_fake
def _(x, logit, kernel, stride, padding, impl):
    out_dtype = torch.promote_types(x.dtype, logit.dtype)
    out = x.new_empty(pooled_shape(x, kernel, stride, padding), dtype=out_dtype)
    return [out, *_saved_like(x, logit, out, impl)]


@torch.library.custom_op("lip_det::lip2d_backward", mutates_args=())
def _backward(grad_out: Tensor, x: Tensor, logit: Tensor, out: Tensor, saved: list[Tensor], kernel: int,
              stride: int, padding: int, impl: str) -> tuple[Tensor, Tensor]:
    _, backward = KERNELS[impl]
    grad_x, grad_logit = backward(grad_out, x, logit, out, saved, kernel, stride, padding)
    return grad_x.contiguous(), grad_logit.contiguous()


@_backward.register_fake
def _(grad_out, x, logit, out, saved, kernel, stride, padding, impl):
    return x.new_empty(x.shape), logit.new_empty(logit.shape)


def _setup_context(ctx, inputs, output):
    x, logit, kernel, stride, padding, impl = inputs
    out, *saved = output
    ctx.save_for_backward(x, logit, out, *saved)
    ctx.window_and_impl = (kernel, stride, padding, impl)
    ctx.mark_non_differentiable(*saved)
    ctx.set_materialize_grads(False)  # no zero gradients are made for the saved tensors


def _autograd_backward(ctx, grads):
    grad_x = grad_logit = None
    if grads[0] is not None:  # None: no gradient reaches the output
        x, logit, out, *saved = ctx.saved_tensors
        grad_x, grad_logit = _backward(grads[0], x, logit, out, saved, *ctx.window_and_impl)
    return grad_x, grad_logit, None, None, None, None


_forward.register_autograd(_autograd_backward, setup_context=_setup_context)


def lip2d_op(x, logit, kernel, stride, padding, impl):
    """lip2d by ``impl`` ("fused" or "triton") as one autograd node; returns (N, C, H', W').

    Saves x, logit, the output and ``impl``'s pooled-size tensors for backward.
    """
    return _forward(x, logit, kernel, stride, padding, impl)[0]


@torch.library.custom_op("lip_det::gated_lip2d_forward", mutates_args=())
def gated_forward(x: Tensor, z: Tensor, scale: Optional[Tensor], shift: Optional[Tensor], coeff: float,
                  kernel: int, stride: int, padding: int) -> tuple[Tensor, Tensor]:
    """(out (N, C, H', W'), lse) of lip2d with logits ``coeff * sigmoid(z * scale + shift)``."""
    out, (lse,) = triton_forward(x, z, kernel, stride, padding, Gate(scale, shift, coeff))
    return out, lse


@gated_forward.register_fake
def _(x, z, scale, shift, coeff, kernel, stride, padding):
    shape = pooled_shape(x, kernel, stride, padding)
    return x.new_empty(shape, dtype=torch.promote_types(x.dtype, z.dtype)), x.new_empty(shape, dtype=compute_dtype(x))


@torch.library.custom_op("lip_det::gated_lip2d_backward", mutates_args=())
def gated_backward(grad_out: Tensor, x: Tensor, z: Tensor, scale: Optional[Tensor], shift: Optional[Tensor],
                   out: Tensor, lse: Tensor, coeff: float, kernel: int, stride: int,
                   padding: int) -> tuple[Tensor, Tensor]:
    """(dL/dx (x's dtype), dL/d(z * scale + shift) (N, C, H, W) in lse's dtype)."""
    return triton_backward(grad_out, x, z, out, (lse,), kernel, stride, padding, Gate(scale, shift, coeff))


@gated_backward.register_fake
def _(grad_out, x, z, scale, shift, out, lse, coeff, kernel, stride, padding):
    return torch.empty_like(x), x.new_empty(x.shape, dtype=lse.dtype)


TRITON_OPS = ("lip_det::gated_lip2d_forward", "lip_det::gated_lip2d_backward")
"""Custom ops that are one Triton launch whatever the device (the lip2d ops are when their
impl argument is "triton")."""
