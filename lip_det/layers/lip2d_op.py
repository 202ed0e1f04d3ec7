"""lip2d's "fused" and "triton" impls as ``torch.library`` custom ops.

``lip_det::lip2d_forward`` and ``lip_det::lip2d_backward`` are opaque to ``torch.compile``:
it traces them from their fake (shape-only) kernels without graph breaks and calls the real
ones at run time. Both return contiguous tensors, as their fake kernels say.
"""
import torch
from torch import Tensor

from .lip2d_fused import compute_dtype, fused_backward, fused_forward, pooled_shape
from .lip2d_triton import triton_backward, triton_forward

__all__ = ["KERNELS", "lip2d_op"]

KERNELS = {
    "fused": (fused_forward, fused_backward),
    "triton": (triton_forward, triton_backward),
}
"""impl -> (forward(x, logit, kernel, stride, padding) -> (out, state),
backward(grad_out, x, logit, out, state, kernel, stride, padding) -> (grad_x, grad_logit)).
The state is pooled-size: fused's pooled weights, triton's per-window log-sum-exps."""


@torch.library.custom_op("lip_det::lip2d_forward", mutates_args=())
def _forward(x: Tensor, logit: Tensor, kernel: int, stride: int, padding: int, impl: str) -> tuple[Tensor, Tensor]:
    forward, _ = KERNELS[impl]
    out, state = forward(x, logit, kernel, stride, padding)
    return out.contiguous(), state.contiguous()


@_forward.register_fake
def _(x, logit, kernel, stride, padding, impl):
    n, c, h, w = pooled_shape(x, kernel, stride, padding)
    state_channels = logit.shape[1] if impl == "fused" else c  # pooled weights / window log-sum-exps
    return (x.new_empty((n, c, h, w), dtype=torch.promote_types(x.dtype, logit.dtype)),
            x.new_empty((n, state_channels, h, w), dtype=compute_dtype(x)))


@torch.library.custom_op("lip_det::lip2d_backward", mutates_args=())
def _backward(grad_out: Tensor, x: Tensor, logit: Tensor, out: Tensor, state: Tensor, kernel: int,
              stride: int, padding: int, impl: str) -> tuple[Tensor, Tensor]:
    _, backward = KERNELS[impl]
    grad_x, grad_logit = backward(grad_out, x, logit, out, state, kernel, stride, padding)
    return grad_x.contiguous(), grad_logit.contiguous()


@_backward.register_fake
def _(grad_out, x, logit, out, state, kernel, stride, padding, impl):
    return x.new_empty(x.shape), logit.new_empty(logit.shape)


def _setup_context(ctx, inputs, output):
    x, logit, kernel, stride, padding, impl = inputs
    out, state = output
    ctx.save_for_backward(x, logit, out, state)
    ctx.window_and_impl = (kernel, stride, padding, impl)
    ctx.mark_non_differentiable(state)


def _autograd_backward(ctx, grad_out, _grad_state):
    grad_x, grad_logit = _backward(grad_out, *ctx.saved_tensors, *ctx.window_and_impl)
    return grad_x, grad_logit, None, None, None, None


_forward.register_autograd(_autograd_backward, setup_context=_setup_context)


def lip2d_op(x, logit, kernel, stride, padding, impl):
    """lip2d by ``impl`` ("fused" or "triton") as one autograd node; returns (N, C, H', W').

    Saves x, logit, the output and a pooled-size state for backward (see :data:`KERNELS`).
    """
    return _forward(x, logit, kernel, stride, padding, impl)[0]
