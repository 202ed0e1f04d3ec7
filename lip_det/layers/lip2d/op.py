"""lip2d's "fused" and "triton" impls as ``torch.library`` custom ops.

``lip_det::lip2d_forward`` and ``lip_det::lip2d_backward`` are opaque to ``torch.compile``:
it traces them from their fake (shape-only) kernels without graph breaks and calls the real
ones at run time. Both return contiguous tensors, as their fake kernels say.
Eager mode runs the same functions in a plain autograd node (:class:`_EagerLIP2d`).
"""
import torch
from torch import Tensor

from .fused import fused_backward, fused_forward
from .math import compute_dtype, pooled_shape
from .triton_kernels import triton_backward, triton_forward

__all__ = ["KERNELS", "lip2d_op"]

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


class _EagerLIP2d(torch.autograd.Function):
    """The custom ops' autograd node without their dispatch, which costs more host time per
    call than a small kernel takes on a GPU: eager mode runs this, compiled code the ops."""

    @staticmethod
    def forward(ctx, x, logit, kernel, stride, padding, impl):
        out, saved = KERNELS[impl][0](x, logit, kernel, stride, padding)
        ctx.save_for_backward(x, logit, out, *saved)
        ctx.window_and_impl = (kernel, stride, padding, impl)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, logit, out, *saved = ctx.saved_tensors
        kernel, stride, padding, impl = ctx.window_and_impl
        return (*KERNELS[impl][1](grad_out, x, logit, out, saved, kernel, stride, padding), None, None, None, None)


def lip2d_op(x, logit, kernel, stride, padding, impl):
    """lip2d by ``impl`` ("fused" or "triton") as one autograd node; returns (N, C, H', W').

    Saves x, logit, the output and ``impl``'s pooled-size tensors for backward.
    """
    if torch.compiler.is_compiling():
        return _forward(x, logit, kernel, stride, padding, impl)[0]
    return _EagerLIP2d.apply(x, logit, kernel, stride, padding, impl)
