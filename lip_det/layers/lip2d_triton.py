"""lip2d as two Triton kernels (GPU; on CPU tensors through ``TRITON_INTERPRET=1``).

Forward: one program per block of outputs; each window is read twice, first for its max
logit ``m``, then for ``sum exp(l - m) * x`` and ``sum exp(l - m)``, accumulated in float32
(float64 for float64 inputs), so no weight exceeds 1 whatever the input dtype. It stores
the output and ``lse = m + log(sum)``.
Backward gathers, for each input position, the windows that contain it:
    p = exp(l - lse_o),  dL/dx = sum_o g_o p,  dL/dlogit = sum_o g_o p (x - y_o).
Any kernel, stride, padding and size work; a (N, 1, H, W) logit is broadcast over channels.

Offsets are int32 unless a launch needs more (:func:`offsets_need_int64`): int64 division,
which turns flat offsets into (n, c, h, w), is several times slower on GPUs. Block size and
warps are autotuned per window, dtypes and size class (the power of two of the element
count); each element is computed by one lane with the same arithmetic whatever the block,
so the config chosen changes speed, never values.
"""
import functools

import torch

from .lip2d_fused import compute_dtype, pooled_shape

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs: the "fused" impl serves
    triton = tl = None

__all__ = ["triton_forward", "triton_backward", "triton_usable", "offsets_need_int64"]

_CONFIGS = ((128, 4), (256, 4), (512, 4), (1024, 8))
"""(BLOCK, num_warps) candidates: 1 to 4 elements per thread."""

_MAX_BLOCK = max(block for block, _ in _CONFIGS)


def triton_usable(device):
    """True when Triton can run on ``device``: CUDA, or the interpreter for CPU tensors."""
    if triton is None:
        return False
    return device.type == "cuda" or (device.type == "cpu" and bool(triton.knobs.runtime.interpret))


def offsets_need_int64(x, out, kernel):
    """Whether a launch on x (N, C, H, W) and out (N, C, H', W') may form offsets of 2**31 or more.

    The kernels form offsets up to the larger element count plus ``kernel`` padded rows
    (windows hanging over the padding: masked, but their offsets are formed) plus one block
    (the last program's lanes past the end).
    """
    largest = max(x.numel(), out.numel()) + kernel * (x.shape[-1] + 1) + _MAX_BLOCK
    return largest >= 2**31


if triton is not None:  # kernels stay plain functions until first use (see _kernels)

    def lip2d_fwd(x_ptr, logit_ptr, out_ptr, lse_ptr, C, H, W, OH, OW, logit_c, logit_channel_step,
                  total, SIZE_CLASS, KERNEL: tl.constexpr, STRIDE: tl.constexpr,
                  PADDING: tl.constexpr, ACC: tl.constexpr, INDEX_64: tl.constexpr, BLOCK: tl.constexpr):
        pid = tl.program_id(0)
        if INDEX_64:
            pid = pid.to(tl.int64)
        offs = pid * BLOCK + tl.arange(0, BLOCK)
        live = offs < total
        idx = tl.where(live, offs, 0)  # lanes past the end form no out-of-range offsets
        ow = idx % OW
        oh = (idx // OW) % OH
        c = (idx // (OW * OH)) % C
        n = idx // (OW * OH * C)
        x_base = (n * C + c) * H * W
        logit_base = (n * logit_c + c * logit_channel_step) * H * W
        top, left = oh * STRIDE - PADDING, ow * STRIDE - PADDING
        peak = tl.full((BLOCK,), float("-inf"), ACC)
        for kh in tl.static_range(KERNEL):
            for kw in tl.static_range(KERNEL):
                ih, iw = top + kh, left + kw
                ok = live & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
                lv = tl.load(logit_ptr + logit_base + ih * W + iw, mask=ok, other=float("-inf"))
                peak = tl.maximum(peak, lv.to(ACC))
        peak = tl.where(live, peak, 0.0)
        num = tl.full((BLOCK,), 0.0, ACC)
        den = tl.full((BLOCK,), 0.0, ACC)
        for kh in tl.static_range(KERNEL):
            for kw in tl.static_range(KERNEL):
                ih, iw = top + kh, left + kw
                ok = live & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
                lv = tl.load(logit_ptr + logit_base + ih * W + iw, mask=ok, other=float("-inf")).to(ACC)
                xv = tl.load(x_ptr + x_base + ih * W + iw, mask=ok, other=0.0).to(ACC)
                e = tl.exp(lv - peak)  # 0 where masked
                num += e * xv
                den += e
        den = tl.where(live, den, 1.0)
        tl.store(out_ptr + idx, (num / den).to(out_ptr.dtype.element_ty), mask=live)
        tl.store(lse_ptr + idx, peak + tl.log(den), mask=live)

    def lip2d_bwd(x_ptr, logit_ptr, out_ptr, lse_ptr, grad_ptr, grad_x_ptr, grad_logit_ptr,
                  C, H, W, OH, OW, logit_c, logit_channel_step, total, SIZE_CLASS,
                  KERNEL: tl.constexpr, STRIDE: tl.constexpr, PADDING: tl.constexpr,
                  ACC: tl.constexpr, INDEX_64: tl.constexpr, BLOCK: tl.constexpr):
        pid = tl.program_id(0)
        if INDEX_64:
            pid = pid.to(tl.int64)
        offs = pid * BLOCK + tl.arange(0, BLOCK)
        live = offs < total
        idx = tl.where(live, offs, 0)  # lanes past the end form no out-of-range offsets
        iw = idx % W
        ih = (idx // W) % H
        c = (idx // (W * H)) % C
        n = idx // (W * H * C)
        xv = tl.load(x_ptr + idx, mask=live, other=0.0).to(ACC)
        logit_at = (n * logit_c + c * logit_channel_step) * H * W + ih * W + iw
        lv = tl.load(logit_ptr + logit_at, mask=live, other=0.0).to(ACC)
        out_base = (n * C + c) * OH * OW
        grad_x = tl.full((BLOCK,), 0.0, ACC)
        grad_logit = tl.full((BLOCK,), 0.0, ACC)
        for kh in tl.static_range(KERNEL):
            th = ih + PADDING - kh  # = oh * STRIDE for the window whose row kh is ih
            th = tl.where(th >= 0, th, 0)
            oh = th // STRIDE
            row_ok = (ih + PADDING - kh >= 0) & (th % STRIDE == 0) & (oh < OH)
            for kw in tl.static_range(KERNEL):
                tw = iw + PADDING - kw
                tw = tl.where(tw >= 0, tw, 0)
                ow = tw // STRIDE
                ok = live & row_ok & (iw + PADDING - kw >= 0) & (tw % STRIDE == 0) & (ow < OW)
                o = out_base + oh * OW + ow
                g = tl.load(grad_ptr + o, mask=ok, other=0.0).to(ACC)
                yv = tl.load(out_ptr + o, mask=ok, other=0.0).to(ACC)
                lse = tl.load(lse_ptr + o, mask=ok, other=float("inf"))  # exp(lv - lse) = 0 there
                gp = g * tl.exp(lv - lse)
                grad_x += gp
                grad_logit += gp * (xv - yv)
        tl.store(grad_x_ptr + idx, grad_x.to(grad_x_ptr.dtype.element_ty), mask=live)
        tl.store(grad_logit_ptr + idx, grad_logit, mask=live)


@functools.lru_cache(maxsize=None)
def _kernels(interpret):
    """The autotuned, jitted (forward, backward) kernels.

    Jitting is deferred so TRITON_INTERPRET is read when first used. The interpreter gets
    the largest block only: timing means nothing there, and it runs a block as one array op.
    """
    configs = [triton.Config({"BLOCK": block}, num_warps=warps) for block, warps in _CONFIGS]
    tune = triton.autotune(configs[-1:] if interpret else configs,
                           key=["SIZE_CLASS", "KERNEL", "STRIDE", "PADDING", "INDEX_64"])
    return tuple(tune(triton.jit(fn, do_not_specialize=["SIZE_CLASS"])) for fn in (lip2d_fwd, lip2d_bwd))


def _launch(kernel, total, *args, **constexprs):
    """Runs ``kernel`` over ``total`` elements; their size class keys the autotuning cache."""
    grid = lambda meta: (triton.cdiv(total, meta["BLOCK"]),)  # noqa: E731
    kernel[grid](*args, total, total.bit_length(), **constexprs)


def _logit_layout(x, logit):
    """(logit channels, channel step): step 0 broadcasts a (N, 1, H, W) logit over x's channels."""
    return logit.shape[1], int(logit.shape[1] == x.shape[1])


def _constexprs(x, out, kernel, stride, padding):
    return dict(KERNEL=kernel, STRIDE=stride, PADDING=padding,
                ACC=tl.float64 if x.dtype == torch.float64 else tl.float32,
                INDEX_64=offsets_need_int64(x, out, kernel))


def triton_forward(x, logit, kernel, stride, padding):
    """lip2d of x (N, C, H, W) with logit (N, C or 1, H, W) by the forward kernel.

    Returns:
        out (N, C, H', W') in the promoted dtype of x and logit, and what
        :func:`triton_backward` needs: ``(lse,)``, each window's log-sum-exp of logits
        (N, C, H', W') in :func:`compute_dtype`.
    """
    if not triton_usable(x.device):
        raise ValueError(
            f"lip2d: impl 'triton' needs CUDA tensors and the triton package (got a {x.device.type} "
            "tensor); use impl 'fused' or 'auto'"
        )
    x, logit = x.contiguous(), logit.contiguous()
    shape = pooled_shape(x, kernel, stride, padding)
    out = x.new_empty(shape, dtype=torch.promote_types(x.dtype, logit.dtype))
    lse = x.new_empty(shape, dtype=compute_dtype(x))
    fwd, _ = _kernels(bool(triton.knobs.runtime.interpret))
    _launch(fwd, out.numel(), x, logit, out, lse, *x.shape[1:], *shape[2:], *_logit_layout(x, logit),
            **_constexprs(x, out, kernel, stride, padding))
    return out, (lse,)


def triton_backward(grad_out, x, logit, out, saved, kernel, stride, padding):
    """Gradients (x's shape and dtype, logit's shape and dtype) from :func:`triton_forward`'s results."""
    (lse,) = saved
    x, logit = x.contiguous(), logit.contiguous()
    grad_x = torch.empty_like(x)
    grad_logit = torch.empty(x.shape, dtype=lse.dtype, device=x.device)
    _, bwd = _kernels(bool(triton.knobs.runtime.interpret))
    _launch(bwd, x.numel(), x, logit, out, lse, grad_out.contiguous(), grad_x, grad_logit,
            *x.shape[1:], *out.shape[2:], *_logit_layout(x, logit),
            **_constexprs(x, out, kernel, stride, padding))
    if logit.shape[1] != x.shape[1]:
        grad_logit = grad_logit.sum(1, keepdim=True)
    return grad_x, grad_logit.to(logit.dtype)
