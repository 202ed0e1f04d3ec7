"""A LIP block's logit path and both lip2d as one memory-lean autograd node (``RECOMPUTE_LOGITS``).

Run as modules, the official logit path (trunk: conv1x1 -> IN -> ReLU -> conv3x3 -> IN -> ReLU;
per branch a head: conv1x1 -> IN -> ``coeff * sigmoid``; then lip2d) keeps for backward four
width-channel maps of the trunk and three C-channel maps per head, all at full resolution.
:func:`lean_lip2d` computes the same values in one node that keeps its inputs and outputs, the
trunk's two conv outputs and per-plane norm statistics, and recomputes the rest in backward,
each once: the trunk's norms (from their saved statistics) and ReLUs, the heads (1x1 convs,
norms, gates), ``exp`` and the pooled weights. The trunk's 3x3 conv, the expensive one, is
never run twice.

Gated logits lie in ``[0, coeff]`` and ``coeff <= 30`` (``MODEL.LIP.COEFF``), so ``exp(logit)``
needs no shift in float32 or float64: this is the "fused" lip2d's arithmetic (:mod:`.math`'s
formulas) with a zero shift, and the norms are group norms with one group per channel (what
InstanceNorm computes), so outputs and gradients equal the modules' up to float rounding.
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..logit import ConvLogit, SharedLogitTrunk
from .auto import auto_impl
from .gated import is_affine_instance_norm
from .math import Window, lip2d_from_weights, lip2d_grads_from_weights

__all__ = ["lean_lip2d", "lean_path_applies"]


def _instance_norm(z, weight, bias, eps):
    """InstanceNorm2d of z (N, C, H, W) with affine ``weight``, ``bias`` (C,): group norm with
    one group per channel, one kernel.

    Returns:
        the output (N, C, H, W) and the per-plane mean and 1 / std (N, C) for backward.
    """
    n, c, h, w = z.shape
    return torch.native_group_norm(z, weight, bias, n, c, h * w, c, eps)


def _instance_norm_again(z, weight, bias, mean, rstd):
    """:func:`_instance_norm`'s output from its saved statistics, in one pass over z:
    ``z * (rstd weight) + (bias - mean rstd weight)``."""
    scale = rstd * weight
    shift = torch.addcmul(bias, mean, scale, value=-1)
    return torch.addcmul(shift[..., None, None], z, scale[..., None, None])


def _instance_norm_backward(grad_out, z, weight, mean, rstd, eps):
    """Gradients of :func:`_instance_norm` (z's, weight's, bias's) for ``grad_out`` (z's shape)."""
    n, c, h, w = z.shape
    return torch.ops.aten.native_group_norm_backward(grad_out, z, mean, rstd, weight, n, c, h * w, c,
                                                     [True, True, True])


@dataclass(frozen=True)
class _Stage:
    """A conv (stride 1, no bias) and the InstanceNorm after it: trunk stages and heads."""

    conv: torch.nn.Conv2d
    norm: torch.nn.InstanceNorm2d

    def conv_forward(self, x):
        return F.conv2d(x, self.conv.weight, None, 1, self.conv.padding)

    def forward(self, x):
        """``norm(conv(x))`` (N, C_out, H, W), the conv output and the norm's statistics."""
        z = self.conv_forward(x)
        return (*_instance_norm(z, self.norm.weight, self.norm.bias, self.norm.eps), z)

    def norm_from_statistics(self, z, mean, rstd):
        """``norm(z)`` from the statistics :meth:`forward` returned."""
        return _instance_norm_again(z, self.norm.weight, self.norm.bias, mean, rstd)

    def backward(self, grad_out, x, z, mean, rstd, grad_input):
        """(grad of x or None, grads of conv weight, norm weight, norm bias) for ``grad_out`` (z's shape)."""
        norm = self.norm
        grad_z, grad_gamma, grad_beta = _instance_norm_backward(grad_out, z, norm.weight, mean, rstd, norm.eps)
        grad_x, grad_w, _ = torch.ops.aten.convolution_backward(
            grad_z, x, self.conv.weight, None, [1, 1], list(self.conv.padding), [1, 1], False, [0, 0], 1,
            [grad_input, True, False])
        return grad_x, grad_w, grad_gamma, grad_beta


def _trunk_stages(trunk):
    return () if trunk is None else (_Stage(trunk.conv1, trunk.norm1), _Stage(trunk.conv2, trunk.norm2))


class _LeanLIP(torch.autograd.Function):
    """``(features, *params, *xs) -> pooled xs``; see :func:`lean_lip2d`.

    Saves ``features``, the trunk's conv outputs, the xs, the outputs and per-plane
    statistics; backward recomputes the trunk's norms and ReLUs and, once each, the heads.
    """

    @staticmethod
    def forward(ctx, trunk, lips, window, features, *tensors):
        xs = tensors[-len(lips):]
        y, trunk_saved = features, []
        for stage in _trunk_stages(trunk):
            y, mean, rstd, z = stage.forward(y)
            y = y.relu_()
            trunk_saved += [z, mean, rstd]
        outs, head_saved = [], []
        for x, lip in zip(xs, lips):
            gate, mean, rstd, _ = _Stage(lip.logit.conv, lip.logit.norm).forward(y)
            weight = gate.sigmoid_().mul_(lip.logit.gate.coeff).exp_()
            outs.append(lip2d_from_weights(x, weight, window)[0])
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
        for i, stage in enumerate(stages):
            ys.append(stage.norm_from_statistics(*trunk_saved[3 * i:3 * i + 3]).relu_())
        y = ys[-1]
        needs_grad_y = bool(stages) or ctx.needs_input_grad[3]
        grad_y, head_grads, grad_xs = None, [], []
        for x, lip, out, grad_out, mean, rstd in zip(xs, lips, outs, grad_outs, head_saved[0::2], head_saved[1::2]):
            head = _Stage(lip.logit.conv, lip.logit.norm)
            z = head.conv_forward(y)
            gate = head.norm_from_statistics(z, mean, rstd).sigmoid_()
            grad_xs.append(_lip2d_gate_backward_(grad_out, x, gate, lip.logit.gate.coeff, out, window))
            grad_yi, *grads = head.backward(gate, y, z, mean, rstd, needs_grad_y)
            del gate, z
            grad_y = grad_yi if grad_y is None else grad_y.add_(grad_yi)
            head_grads += grads
        trunk_grads = []
        for i in reversed(range(len(stages))):
            z, mean, rstd = trunk_saved[3 * i:3 * i + 3]
            grad_y = torch.ops.aten.threshold_backward.grad_input(grad_y, ys[i + 1], 0, grad_input=grad_y)
            grad_y, *grads = stages[i].backward(grad_y, ys[i], z, mean, rstd, i > 0 or ctx.needs_input_grad[3])
            trunk_grads = grads + trunk_grads
        return (None, None, None, grad_y, *trunk_grads, *head_grads, *grad_xs)


def _lip2d_gate_backward_(grad_out, x, gate, coeff, out, window):
    """The gradient of x for one head, recomputing ``exp`` and the pooled weights; the gradient
    of the gate's input is written over ``gate`` (its sigmoid, (N, C, H, W))."""
    weight = torch.mul(gate, coeff).exp_()
    grad_x, grad_logit = lip2d_grads_from_weights(grad_out, x, weight, out, window.average(weight), window,
                                                  scale=coeff)
    del weight
    torch.ops.aten.sigmoid_backward.grad_input(grad_logit, gate, grad_input=gate)
    return grad_x


def _params(trunk, lips):
    pairs = [] if trunk is None else [(trunk.conv1, trunk.norm1), (trunk.conv2, trunk.norm2)]
    pairs += [(lip.logit.conv, lip.logit.norm) for lip in lips]
    return [p for conv, norm in pairs for p in (conv.weight, norm.weight, norm.bias)]


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
    window = Window(first.kernel, first.stride, first.padding)
    return _LeanLIP.apply(trunk, tuple(lips), window, features, *_params(trunk, lips), *xs)


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
    if trunk is not None and not (isinstance(trunk, SharedLogitTrunk) and all(map(is_affine_instance_norm, (trunk.norm1, trunk.norm2)))):
        return False
    for lip, branch_x in zip(lips, xs):
        logit = getattr(lip, "logit", None)
        if not (isinstance(logit, ConvLogit) and is_affine_instance_norm(logit.norm)):
            return False
        impl = lip.impl if lip.impl != "auto" else auto_impl(branch_x.device, branch_x.dtype, branch_x.dtype)
        if impl != "fused" or branch_x.dtype != x.dtype:
            return False
    return len({(lip.kernel, lip.stride, lip.padding) for lip in lips}) == 1
