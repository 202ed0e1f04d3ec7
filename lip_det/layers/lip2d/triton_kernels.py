"""lip2d as two Triton kernels (GPU; on CPU tensors through ``TRITON_INTERPRET=1``).

Both kernels run one program per 2-D tile of one (n, c) plane, so rows are read coalesced
and no flat offset is ever divided into (n, c, h, w): the plane comes from the program id,
rows and columns from the tile. They compute :mod:`.math`'s formulas per window:

- forward: each output reads its window's logits once for their max ``m`` and again (from
  cache) for ``sum exp(l - m) x`` and ``sum exp(l - m)``, in float32 (float64 for float64
  inputs), and stores ``out`` and ``lse = m + log(sum exp(l - m))``;
- backward: each input gathers the outputs whose windows hold it,
  ``p = exp(l - lse_o)``, ``dL/dx = sum_o g_o p``, ``dL/dlogit = sum_o g_o p (x - out_o)``.

**Gated** logits: with ``GATED`` the logit is computed on the fly from a head's conv output
``z`` as ``coeff * sigmoid(z * scale + shift)`` (with ``NORMED``, ``scale`` and ``shift`` are an
InstanceNorm's affine folded with the plane's statistics, else 1 and 0), so a LIP head's
norm-apply, gate, ``exp`` and pooling are one launch and the logits are never stored; backward
returns the gradient of ``z * scale + shift`` instead of the logit's. Gated logits lie in
``[0, coeff]``, ``coeff <= 30``, so they need no max (``m = 0``).

Any kernel, stride, padding and size work; a (N, 1, H, W) logit is broadcast over channels.
Offsets are int32 unless a launch needs more (:func:`offsets_need_int64`). Tile shape and
warps are autotuned per window, dtypes and size class (the powers of two of the plane's
height and width); each element is computed by one lane with the same arithmetic whatever
the tile, so the config chosen changes speed, never values.
"""
import collections
import functools
import types
from typing import NamedTuple, Optional

import torch
from torch.utils._python_dispatch import _disable_current_modes

from .math import compute_dtype, pooled_shape

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs: the "fused" impl serves
    triton = tl = None

__all__ = ["Gate", "LAUNCHES", "triton_forward", "triton_backward", "triton_usable", "offsets_need_int64"]

_TILES = ((8, 32, 4), (8, 64, 4), (16, 64, 8), (8, 128, 8))
"""(rows, columns, num_warps) candidates: 2 to 4 elements per thread."""


LAUNCHES = collections.Counter()
"""Kernel name -> launches so far (Triton launches are no ATen ops: op counts add these)."""


class Gate(NamedTuple):
    """Gated logits ``coeff * sigmoid(norm(z))``: ``norm`` an affine InstanceNorm given by the
    per-plane ``mean`` and ``var`` (N, C) of z, its ``weight``, ``bias`` (C,) and ``eps``, or none
    (``mean`` None)."""

    mean: Optional[torch.Tensor]
    var: Optional[torch.Tensor]
    weight: Optional[torch.Tensor]
    bias: Optional[torch.Tensor]
    eps: float
    coeff: float


def triton_usable(device):
    """True when Triton can run on ``device``: CUDA, or the interpreter for CPU tensors."""
    if triton is None:
        return False
    return device.type == "cuda" or (device.type == "cpu" and bool(triton.knobs.runtime.interpret))


def offsets_need_int64(x, out, kernel):
    """Whether a launch on x (N, C, H, W) and out (N, C, H', W') may form offsets of 2**31 or more.

    The kernels form offsets up to the larger element count plus a few rows of the tiles that
    hang over the last plane's end (masked, but their offsets are formed).
    """
    slack = 4 * (max(t[0] for t in _TILES) + kernel) * (x.shape[-1] + max(t[1] for t in _TILES) + kernel)
    return max(x.numel(), out.numel()) + slack >= 2**31


if triton is not None:  # kernels stay plain functions until first use (see _kernels)

    def _plane_and_norm(mean_ptr, var_ptr, weight_ptr, bias_ptr, C, logit_c, logit_channel_step, eps,
                        NORMED: tl.constexpr, ACC: tl.constexpr, INDEX_64: tl.constexpr):
        """This program's plane of x and of the logit, and the norm's per-plane affine (1, 0 without)."""
        plane = tl.program_id(0).to(tl.int64) if INDEX_64 else tl.program_id(0)
        logit_plane = (plane // C) * logit_c + (plane % C) * logit_channel_step
        rstd = 1.0 / tl.sqrt(tl.load(var_ptr + logit_plane).to(ACC) + eps) if NORMED else 1.0
        scale = tl.load(weight_ptr + logit_plane % logit_c).to(ACC) * rstd if NORMED else 1.0
        shift = tl.load(bias_ptr + logit_plane % logit_c) - tl.load(mean_ptr + logit_plane) * scale if NORMED else 0.0
        return plane, logit_plane, scale, shift

    def lip2d_fwd(x_ptr, logit_ptr, mean_ptr, var_ptr, weight_ptr, bias_ptr, out_ptr, lse_ptr, C, H, W, OH, OW,
                  logit_c, logit_channel_step, coeff, eps, H_CLASS, W_CLASS, KERNEL: tl.constexpr, STRIDE: tl.constexpr,
                  PADDING: tl.constexpr, GATED: tl.constexpr, NORMED: tl.constexpr, ACC: tl.constexpr,
                  INDEX_64: tl.constexpr, BH: tl.constexpr, BW: tl.constexpr):
        plane, logit_plane, scale, shift = _plane_and_norm(mean_ptr, var_ptr, weight_ptr, bias_ptr, C, logit_c,
                                                           logit_channel_step, eps, NORMED, ACC, INDEX_64)
        oh = tl.program_id(1) * BH + tl.arange(0, BH)[:, None]
        ow = tl.program_id(2) * BW + tl.arange(0, BW)[None, :]
        live = (oh < OH) & (ow < OW)
        x_plane = x_ptr + plane * H * W
        logit_at = logit_ptr + logit_plane * H * W
        top, left = oh * STRIDE - PADDING, ow * STRIDE - PADDING
        peak = tl.full((BH, BW), 0.0, ACC)
        if not GATED:  # gated logits lie in [0, coeff]: exp needs no shift
            peak = tl.full((BH, BW), float("-inf"), ACC)
            for kh in tl.static_range(KERNEL):
                for kw in tl.static_range(KERNEL):
                    ih, iw = top + kh, left + kw
                    ok = live & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
                    lv = tl.load(logit_at + ih * W + iw, mask=ok, other=float("-inf"))
                    peak = tl.maximum(peak, lv.to(ACC))
            peak = tl.where(live, peak, 0.0)
        num = tl.full((BH, BW), 0.0, ACC)
        den = tl.full((BH, BW), 0.0, ACC)
        for kh in tl.static_range(KERNEL):
            for kw in tl.static_range(KERNEL):
                ih, iw = top + kh, left + kw
                ok = live & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
                offset = ih * W + iw
                lv = tl.load(logit_at + offset, mask=ok, other=0.0).to(ACC)
                if GATED:
                    lv = coeff / (1.0 + tl.exp(-(lv * scale + shift)))
                xv = tl.load(x_plane + offset, mask=ok, other=0.0).to(ACC)
                e = tl.where(ok, tl.exp(lv - peak), 0.0)
                num += e * xv
                den += e
        den = tl.where(live, den, 1.0)
        out_at = plane * OH * OW + oh * OW + ow
        tl.store(out_ptr + out_at, (num / den).to(out_ptr.dtype.element_ty), mask=live)
        tl.store(lse_ptr + out_at, peak + tl.log(den), mask=live)

    def lip2d_bwd(x_ptr, logit_ptr, mean_ptr, var_ptr, weight_ptr, bias_ptr, out_ptr, lse_ptr, grad_ptr,
                  grad_x_ptr, grad_logit_ptr, C, H, W, OH, OW, logit_c, logit_channel_step, coeff, eps, H_CLASS, W_CLASS,
                  KERNEL: tl.constexpr, STRIDE: tl.constexpr, PADDING: tl.constexpr, GATED: tl.constexpr,
                  NORMED: tl.constexpr, ACC: tl.constexpr, INDEX_64: tl.constexpr, BH: tl.constexpr,
                  BW: tl.constexpr):
        plane, logit_plane, scale, shift = _plane_and_norm(mean_ptr, var_ptr, weight_ptr, bias_ptr, C, logit_c,
                                                           logit_channel_step, eps, NORMED, ACC, INDEX_64)
        ih = tl.program_id(1) * BH + tl.arange(0, BH)[:, None]
        iw = tl.program_id(2) * BW + tl.arange(0, BW)[None, :]
        live = (ih < H) & (iw < W)
        at = ih * W + iw
        xv = tl.load(x_ptr + plane * H * W + at, mask=live, other=0.0).to(ACC)
        lv = tl.load(logit_ptr + logit_plane * H * W + at, mask=live, other=0.0).to(ACC)
        if GATED:
            lv = coeff / (1.0 + tl.exp(-(lv * scale + shift)))
        out_plane = plane * OH * OW
        grad_x = tl.full((BH, BW), 0.0, ACC)
        grad_logit = tl.full((BH, BW), 0.0, ACC)
        for kh in tl.static_range(KERNEL):
            th = ih + PADDING - kh  # = oh * STRIDE for the window whose row kh is ih
            row_ok = (th >= 0) & (th % STRIDE == 0) & (th < OH * STRIDE)
            oh = tl.where(th >= 0, th, 0) // STRIDE
            for kw in tl.static_range(KERNEL):
                tw = iw + PADDING - kw
                ok = live & row_ok & (tw >= 0) & (tw % STRIDE == 0) & (tw < OW * STRIDE)
                o = out_plane + oh * OW + tl.where(tw >= 0, tw, 0) // STRIDE
                g = tl.load(grad_ptr + o, mask=ok, other=0.0).to(ACC)
                yv = tl.load(out_ptr + o, mask=ok, other=0.0).to(ACC)
                lse = tl.load(lse_ptr + o, mask=ok, other=float("inf"))  # exp(lv - lse) = 0 there
                gp = g * tl.exp(lv - lse)
                grad_x += gp
                grad_logit += gp * (xv - yv)
        if GATED:  # through coeff * sigmoid: d logit / d pre = logit * (1 - logit / coeff)
            grad_logit = grad_logit * lv * (1.0 - lv / coeff)
        tl.store(grad_x_ptr + plane * H * W + at, grad_x.to(grad_x_ptr.dtype.element_ty), mask=live)
        tl.store(grad_logit_ptr + plane * H * W + at, grad_logit, mask=live)


@functools.lru_cache(maxsize=None)
def _kernels(interpret):
    """The autotuned, jitted (forward, backward) kernels.

    Jitting is deferred so TRITON_INTERPRET is read when first used; each mode's kernels see
    their helper jitted in the same mode. The interpreter gets the largest tile only: timing
    means nothing there, and it runs a tile as one array op.
    """
    configs = [triton.Config({"BH": bh, "BW": bw}, num_warps=warps) for bh, bw, warps in _TILES]
    tune = triton.autotune(configs[-1:] if interpret else configs,
                           key=["H_CLASS", "W_CLASS", "KERNEL", "STRIDE", "PADDING", "GATED", "INDEX_64"])
    jit = functools.partial(triton.jit, do_not_specialize=["H_CLASS", "W_CLASS", "coeff", "eps"])
    namespace = {**globals(), "_plane_and_norm": triton.jit(_plane_and_norm)}
    return tuple(tune(jit(types.FunctionType(fn.__code__, namespace, fn.__name__))) for fn in (lip2d_fwd, lip2d_bwd))


def _launch(kernel, planes, height, width, *args, **constexprs):
    """Runs ``kernel`` over ``planes`` planes of ``height x width`` tiles; the powers of two
    of the plane's size key the autotuning cache."""
    grid = lambda meta: (planes, triton.cdiv(height, meta["BH"]), triton.cdiv(width, meta["BW"]))  # noqa: E731
    LAUNCHES[kernel.fn.__name__] += 1
    with _disable_current_modes():  # a launch is one kernel: dispatch modes see none of the interpreter's copies
        kernel[grid](*args, height.bit_length(), width.bit_length(), **constexprs)


def _logit_layout(x, logit):
    """(logit channels, channel step): step 0 broadcasts a (N, 1, H, W) logit over x's channels."""
    return logit.shape[1], int(logit.shape[1] == x.shape[1])


def _constexprs(x, out, kernel, stride, padding, gate):
    return dict(KERNEL=kernel, STRIDE=stride, PADDING=padding, GATED=gate is not None,
                NORMED=gate is not None and gate.mean is not None,
                ACC=tl.float64 if x.dtype == torch.float64 else tl.float32,
                INDEX_64=offsets_need_int64(x, out, kernel))


def _gate_args(x, gate):
    """The pointers (mean, var, weight, bias) and the floats (coeff, eps) of a launch; unused
    pointers point at x."""
    if gate is None or gate.mean is None:
        return (x,) * 4, (0.0 if gate is None else gate.coeff, 0.0)
    return (gate.mean, gate.var, gate.weight, gate.bias), (gate.coeff, gate.eps)


def triton_forward(x, logit, kernel, stride, padding, gate=None):
    """lip2d of x (N, C, H, W) with logit (N, C or 1, H, W) by the forward kernel.

    Args:
        gate: None, or a :class:`Gate`: then ``logit`` is a head's conv output ``z`` and the
            logit is ``gate.coeff * sigmoid(norm(z))``.
    Returns:
        out (N, C, H', W') in the promoted dtype of x and logit, and what
        :func:`triton_backward` needs: ``(lse,)``, each window's log-sum-exp of logits
        (N, C, H', W') in :func:`~.math.compute_dtype`.
    """
    if not triton_usable(x.device):
        raise ValueError(
            f"lip2d: impl 'triton' needs CUDA tensors and the triton package (got a {x.device.type} "
            "tensor); use impl 'fused' or 'auto'"
        )
    x, logit = x.contiguous(), logit.contiguous()
    shape = pooled_shape(x, kernel, stride, padding)
    out = x.new_empty(shape, dtype=x.dtype if x.dtype == logit.dtype else torch.promote_types(x.dtype, logit.dtype))
    lse = x.new_empty(shape, dtype=compute_dtype(x))
    fwd, _ = _kernels(bool(triton.knobs.runtime.interpret))
    pointers, floats = _gate_args(x, gate)
    _launch(fwd, x.shape[0] * x.shape[1], shape[2], shape[3], x, logit, *pointers, out, lse, *x.shape[1:],
            *shape[2:], *_logit_layout(x, logit), *floats, **_constexprs(x, out, kernel, stride, padding, gate))
    return out, (lse,)


def triton_backward(grad_out, x, logit, out, saved, kernel, stride, padding, gate=None):
    """Gradients from :func:`triton_forward`'s results: x's (its shape and dtype) and the
    logit's (its shape and dtype), or with ``gate`` that of ``norm(z)`` (z's shape, float32 or
    float64)."""
    (lse,) = saved
    x, logit = x.contiguous(), logit.contiguous()
    grad_x = torch.empty_like(x)
    grad_logit = torch.empty(x.shape, dtype=lse.dtype, device=x.device)
    _, bwd = _kernels(bool(triton.knobs.runtime.interpret))
    pointers, floats = _gate_args(x, gate)
    _launch(bwd, x.shape[0] * x.shape[1], x.shape[2], x.shape[3], x, logit, *pointers, out, lse,
            grad_out.contiguous(), grad_x, grad_logit, *x.shape[1:], *out.shape[2:], *_logit_layout(x, logit),
            *floats, **_constexprs(x, out, kernel, stride, padding, gate))
    if logit.shape[1] != x.shape[1]:
        grad_logit = grad_logit.sum(1, keepdim=True)
    return grad_x, grad_logit if gate is not None else grad_logit.to(logit.dtype)
