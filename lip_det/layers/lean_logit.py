"""A LIP block's logit path and both lip2d as one memory-lean autograd node (``RECOMPUTE_LOGITS``).

Run as modules, the official logit path (trunk: conv1x1 -> IN -> ReLU -> conv3x3 -> IN -> ReLU;
per branch a head: conv1x1 -> IN -> ``coeff * sigmoid``; then lip2d) keeps for backward four
width-channel maps of the trunk and three C-channel maps per head, all at full resolution.
:func:`lean_lip2d` computes the same values in one node that keeps its inputs and outputs, the
trunk's two conv outputs and per-plane norm statistics, and recomputes the rest in backward:
the trunk's norms and ReLUs, the heads (1x1 convs, norms, gates), ``exp`` and the pooled
weights. The trunk's 3x3 conv, the expensive one, is never run twice.

Gated logits lie in ``[0, coeff]`` and ``coeff <= 30`` (``MODEL.LIP.COEFF``), so ``exp(logit)``
needs no shift in float32 or float64: this is the "fused" lip2d's arithmetic with a zero
shift, and the norms are the batch-norm calls InstanceNorm makes, so outputs are equal to the
modules' and gradients equal up to float rounding.

With ``W = exp(logit)``, ``A`` the window average, ``D = A(W)`` and ``out = A(x W) / D``:
    dL/dx     = W * A^T(g / D)
    dL/dlogit = x * dL/dx - W * A^T(g out / D)
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .lip2d_auto import auto_impl
from .logit import ConvLogit, SharedLogitTrunk

__all__ = ["lean_lip2d", "lean_path_applies"]


@dataclass(frozen=True)
class _Window:
    """lip2d's pooling window: ``A`` (average pooling) and its transpose."""

    kernel: int
    stride: int
    padding: int

    def pool(self, t):
        return F.avg_pool2d(t, self.kernel, self.stride, self.padding)

    def spread(self, pooled, full_shape):
        """A^T: each pooled value / kernel**2 over its window, into ``full_shape``."""
        full = pooled.new_empty(()).expand(full_shape)
        window = [self.kernel] * 2, [self.stride] * 2, [self.padding] * 2
        return torch.ops.aten.avg_pool2d_backward(pooled, full, *window, False, True, None)


def _instance_norm(z, norm):
    """``norm(z)`` for InstanceNorm2d ``norm`` by the batch-norm call it makes (same values).

    Returns:
        the output (z's shape) and the per-plane mean and 1 / std (N * C,) for backward.
    """
    n, c, h, w = z.shape
    return torch.native_batch_norm(z.view(1, n * c, h, w), norm.weight.repeat(n), norm.bias.repeat(n),
                                   None, None, True, 0.0, norm.eps)


def _instance_norm_backward(grad_out, z, norm, mean, rstd):
    """Gradients of :func:`_instance_norm` (z's, weight's, bias's) for ``grad_out`` (z's shape)."""
    n, c, h, w = z.shape
    grads = torch.ops.aten.native_batch_norm_backward(
        grad_out.view(1, n * c, h, w), z.view(1, n * c, h, w), norm.weight.repeat(n), None, None,
        mean, rstd, True, norm.eps, [True, True, True])
    return grads[0].view(n, c, h, w), grads[1].view(n, c).sum(0), grads[2].view(n, c).sum(0)


def _conv(x, conv):
    return F.conv2d(x, conv.weight, None, 1, conv.padding)


def _conv_backward(grad_out, x, conv, grad_input):
    """(grad of x or None, grad of conv.weight) for a bias-free stride-1 ``conv``."""
    grad_x, grad_w, _ = torch.ops.aten.convolution_backward(
        grad_out, x, conv.weight, None, [1, 1], list(conv.padding), [1, 1], False, [0, 0], 1,
        [grad_input, True, False])
    return grad_x, grad_w


def _trunk_stages(trunk):
    return () if trunk is None else ((trunk.conv1, trunk.norm1), (trunk.conv2, trunk.norm2))


def _norm_relu(z, norm):
    """``relu(norm(z))`` and the norm's statistics."""
    y, mean, rstd = _instance_norm(z, norm)
    return y.view(z.shape).relu_(), mean, rstd


class _LeanLIP(torch.autograd.Function):
    """``(features, *params, *xs) -> pooled xs``; see :func:`lean_lip2d`.

    Saves ``features``, the trunk's conv outputs, the xs, the outputs, the pooled weights
    and per-plane statistics; backward recomputes the trunk's norms and ReLUs and the heads.
    """

    @staticmethod
    def forward(ctx, trunk, lips, window, features, *tensors):
        xs = tensors[-len(lips):]
        y, trunk_saved = features, []
        for conv, norm in _trunk_stages(trunk):
            z = _conv(y, conv)
            y, mean, rstd = _norm_relu(z, norm)
            trunk_saved += [z, mean, rstd]
        outs, head_saved = [], []
        for x, lip in zip(xs, lips):
            weight, mean, rstd = _instance_norm(_conv(y, lip.logit.conv), lip.logit.norm)
            weight = weight.view(x.shape[0], -1, *x.shape[2:]).sigmoid_().mul_(lip.logit.gate.coeff).exp_()
            den = window.pool(weight)
            outs.append(window.pool(weight.mul_(x)).div_(den))
            head_saved += [mean, rstd]
        ctx.trunk, ctx.lips, ctx.window = trunk, lips, window
        ctx.save_for_backward(features, *xs, *outs, *head_saved, *trunk_saved)
        return tuple(outs)

    @staticmethod
    def backward(ctx, *grad_outs):
        lips, window, n = ctx.lips, ctx.window, len(ctx.lips)
        features, *rest = ctx.saved_tensors
        xs, outs, head_saved, trunk_saved = rest[:n], rest[n:2 * n], rest[2 * n:4 * n], rest[4 * n:]
        stages = _trunk_stages(ctx.trunk)
        ys = [features]  # each trunk stage's input, then the heads' input
        for i, (_, norm) in enumerate(stages):
            ys.append(_norm_relu(trunk_saved[3 * i], norm)[0])
        y = ys[-1]
        grad_y, head_grads, grad_xs = None, [], []
        needs_grad_y = bool(stages) or ctx.needs_input_grad[3]
        for x, lip, out, grad_out, mean, rstd in zip(xs, lips, outs, grad_outs, head_saved[0::2], head_saved[1::2]):
            grad_x, grad_gate = _lip2d_gate_backward(grad_out, x, y, lip, out, window)
            z = _conv(y, lip.logit.conv)
            grad_z, grad_gamma, grad_beta = _instance_norm_backward(grad_gate, z, lip.logit.norm, mean, rstd)
            del grad_gate, z
            grad_yi, grad_w = _conv_backward(grad_z, y, lip.logit.conv, needs_grad_y)
            grad_y = grad_yi if grad_y is None else grad_y.add_(grad_yi)
            head_grads += [grad_w, grad_gamma, grad_beta]
            grad_xs.append(grad_x)
        trunk_grads = []
        for i in reversed(range(len(stages))):
            (conv, norm), (z, mean, rstd) = stages[i], trunk_saved[3 * i:3 * i + 3]
            grad_y = torch.ops.aten.threshold_backward.grad_input(grad_y, ys[i + 1], 0, grad_input=grad_y)
            grad_z, grad_gamma, grad_beta = _instance_norm_backward(grad_y, z, norm, mean, rstd)
            grad_y, grad_w = _conv_backward(grad_z, ys[i], conv, i > 0 or ctx.needs_input_grad[3])
            trunk_grads = [grad_w, grad_gamma, grad_beta] + trunk_grads
        return (None, None, None, grad_y, *trunk_grads, *head_grads, *grad_xs)


def _lip2d_gate_backward(grad_out, x, y, lip, out, window):
    """Gradients of x and of the gate's input for one head, recomputing its gate, ``exp`` and
    the pooled weights ``den``."""
    head = lip.logit
    gate = _instance_norm(_conv(y, head.conv), head.norm)[0].view(x.shape[0], -1, *x.shape[2:]).sigmoid_()
    weight = torch.mul(gate, head.gate.coeff).exp_()
    grad_by_den = grad_out.div(window.pool(weight))
    grad_x = window.spread(grad_by_den, x.shape).mul_(weight)
    # coeff * dL/dlogit = coeff * (x * dL/dx - weight * A^T(g out / den)), then through the sigmoid
    grad_gate = window.spread(grad_by_den.mul_(out).mul_(-head.gate.coeff), x.shape).mul_(weight)
    del weight
    grad_gate.addcmul_(x, grad_x, value=head.gate.coeff)
    return grad_x, torch.ops.aten.sigmoid_backward.grad_input(grad_gate, gate, grad_input=grad_gate)


def _params(trunk, lips):
    params = []
    for conv, norm in _trunk_stages(trunk):
        params += [conv.weight, norm.weight, norm.bias]
    for lip in lips:
        params += [lip.logit.conv.weight, lip.logit.norm.weight, lip.logit.norm.bias]
    return params


def lean_lip2d(lips, xs, features, trunk=None):
    """Each ``lips[i](xs[i], trunk(features))`` (or ``lips[i](xs[i])`` with their logits read from
    ``features``), as one memory-lean autograd node.

    Args:
        lips: LIP modules whose logit modules are :class:`ConvLogit` with InstanceNorm.
        xs: the (N, C_i, H, W) features each LIP pools.
        features: (N, K, H, W): the trunk's input, or without a trunk the heads' input.
        trunk: a :class:`SharedLogitTrunk` with InstanceNorm, or None.
    Returns:
        tuple of (N, C_i, H', W'), equal to the modules' outputs.
    """
    first = lips[0]
    window = _Window(first.kernel, first.stride, first.padding)
    return _LeanLIP.apply(trunk, tuple(lips), window, features, *_params(trunk, lips), *xs)


def _plain_instance_norm(norm):
    return isinstance(norm, torch.nn.InstanceNorm2d) and norm.affine and not norm.track_running_stats


def lean_path_applies(lips, xs, trunk=None):
    """Whether :func:`lean_lip2d` computes what the modules would: InstanceNorm logits, the
    "fused" lip2d, float32/64 without autocast, and neither tracing nor compiling (those
    need the modules' plain ops)."""
    x = xs[0]
    autocast = torch.amp.is_autocast_available(x.device.type) and torch.is_autocast_enabled(x.device.type)
    if torch.jit.is_tracing() or torch.compiler.is_compiling() or autocast:
        return False
    if x.dtype not in (torch.float32, torch.float64):
        return False
    if trunk is not None and not (isinstance(trunk, SharedLogitTrunk) and all(map(_plain_instance_norm, (trunk.norm1, trunk.norm2)))):
        return False
    for lip, branch_x in zip(lips, xs):
        logit = getattr(lip, "logit", None)
        if not (isinstance(logit, ConvLogit) and _plain_instance_norm(logit.norm)):
            return False
        impl = lip.impl if lip.impl != "auto" else auto_impl(branch_x.device, branch_x.dtype, branch_x.dtype)
        if impl != "fused" or branch_x.dtype != x.dtype:
            return False
    return len({(lip.kernel, lip.stride, lip.padding) for lip in lips}) == 1
