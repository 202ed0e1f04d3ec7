"""A LIP head's norm, gate and lip2d as one Triton launch each way (the CUDA path of LIP).

A LIP logit head is ``conv -> InstanceNorm (or nothing) -> coeff * sigmoid``, then lip2d.
Run as modules that is several launches forward and backward and three maps kept per head.
:func:`gated_lip2d` takes the head's conv output ``z`` instead: it computes the norm's
per-plane statistics (one ``var_mean``) and runs the gated Triton kernels
(:mod:`.triton_kernels`), which fold them with the norm's affine and compute the logits on the
fly in both passes. Backward runs the gated backward kernel, which
returns the gradient of ``z * scale + shift``, then the norm's backward (``native_group_norm``
with one group per channel is InstanceNorm). Kept for backward: x, z, the output, the
per-window log-sum-exps and per-plane statistics; the logits are never stored.
"""
import torch

from .math import compute_dtype
from .triton_kernels import Gate, triton_backward, triton_forward

__all__ = ["gated_lip2d", "gated_norm_applies", "is_affine_instance_norm"]


def is_affine_instance_norm(norm):
    """Whether ``norm`` is an affine InstanceNorm2d without running statistics (the official one)."""
    return isinstance(norm, torch.nn.InstanceNorm2d) and norm.affine and not norm.track_running_stats


def gated_norm_applies(norm):
    """Whether :func:`gated_lip2d` can fold ``norm``: None or :func:`is_affine_instance_norm`."""
    return norm is None or is_affine_instance_norm(norm)


def _as(t, dtype):
    """t in dtype, without a dispatched no-op cast when it already is."""
    return t if t.dtype == dtype else t.to(dtype)


class _GatedLIP2d(torch.autograd.Function):
    """``(x, z, norm weight, norm bias) -> lip2d(x, coeff * sigmoid(norm(z)))``."""

    @staticmethod
    def forward(ctx, x, z, weight, bias, coeff, eps, window):
        mean = var = None
        if weight is not None:
            var, mean = torch.var_mean(_as(z, compute_dtype(z)), dim=(2, 3), correction=0)
        gate = Gate(mean, var, weight, bias, eps, coeff)
        out, (lse,) = triton_forward(x, z, *window, gate=gate)
        ctx.gate, ctx.window = gate, window
        ctx.save_for_backward(x, z, out, lse)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, z, out, lse = ctx.saved_tensors
        gate = ctx.gate
        grad_x, grad_pre = triton_backward(grad_out, x, z, out, (lse,), *ctx.window, gate=gate)
        if gate.weight is None:
            return grad_x, _as(grad_pre, z.dtype), None, None, None, None, None
        n, c, h, w = z.shape
        dtype = grad_pre.dtype
        grad_z, grad_weight, grad_bias = torch.ops.aten.native_group_norm_backward(
            grad_pre, _as(z, dtype), gate.mean, gate.var.add(gate.eps).rsqrt_(), _as(gate.weight, dtype),
            n, c, h * w, c, [True, *ctx.needs_input_grad[2:4]])
        return grad_x, _as(grad_z, z.dtype), grad_weight, grad_bias, None, None, None


def gated_lip2d(x, z, norm, coeff, window):
    """``lip2d(x, coeff * sigmoid(norm(z)))`` by the gated Triton kernels.

    Args:
        x: (N, C, H, W) features to pool.
        z: (N, C, H, W) a logit head's conv output.
        norm: None or an affine ``nn.InstanceNorm2d`` (:func:`gated_norm_applies`).
        coeff: the gate's coefficient, in (0, 30].
        window: (kernel, stride, padding).
    Returns:
        (N, C, H', W'), equal to the modules' result up to float rounding.
    """
    weight, bias, eps = (None, None, 0.0) if norm is None else (norm.weight, norm.bias, norm.eps)
    return _GatedLIP2d.apply(x, z, weight, bias, float(coeff), eps, tuple(window))
