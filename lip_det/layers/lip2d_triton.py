"""lip2d as two Triton kernels (GPU; on CPU tensors through ``TRITON_INTERPRET=1``).

Forward: one program per block of outputs; each window is read twice, first for its max
logit ``m``, then for ``sum exp(l - m) * x`` and ``sum exp(l - m)``, accumulated in float32
(float64 for float64 inputs), so no weight exceeds 1 whatever the input dtype. It stores
the output and ``lse = m + log(sum)``.
Backward gathers, for each input position, the windows that contain it:
    p = exp(l - lse_o),  dL/dx = sum_o g_o p,  dL/dlogit = sum_o g_o p (x - y_o).
Any kernel, stride, padding and size work; a (N, 1, H, W) logit is broadcast over channels.
"""
import functools

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs: the "fused" impl serves
    triton = tl = None

__all__ = ["lip2d_triton", "triton_usable"]

_BLOCK = 256


def triton_usable(x):
    """True when Triton can run on ``x``'s device: CUDA, or the interpreter for CPU tensors."""
    if triton is None:
        return False
    return x.is_cuda or (x.device.type == "cpu" and bool(triton.knobs.runtime.interpret))


if triton is not None:  # kernels stay plain functions until first use (see _kernels)

    def lip2d_fwd(x_ptr, logit_ptr, out_ptr, lse_ptr, total, C, H, W, OH, OW, logit_c,
                  logit_channel_step, KERNEL: tl.constexpr, STRIDE: tl.constexpr,
                  PADDING: tl.constexpr, ACC: tl.constexpr, BLOCK: tl.constexpr):
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        live = offs < total
        ow = offs % OW
        oh = (offs // OW) % OH
        c = (offs // (OW * OH)) % C
        n = offs // (OW * OH * C)
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
                lv = tl.load(logit_ptr + logit_base + ih * W + iw, mask=ok, other=0.0).to(ACC)
                xv = tl.load(x_ptr + x_base + ih * W + iw, mask=ok, other=0.0).to(ACC)
                e = tl.where(ok, tl.exp(lv - peak), 0.0)
                num += e * xv
                den += e
        den = tl.where(live, den, 1.0)
        tl.store(out_ptr + offs, (num / den).to(out_ptr.dtype.element_ty), mask=live)
        tl.store(lse_ptr + offs, peak + tl.log(den), mask=live)

    def lip2d_bwd(x_ptr, logit_ptr, out_ptr, lse_ptr, grad_ptr, grad_x_ptr, grad_logit_ptr,
                  total, C, H, W, OH, OW, logit_c, logit_channel_step, KERNEL: tl.constexpr,
                  STRIDE: tl.constexpr, PADDING: tl.constexpr, ACC: tl.constexpr, BLOCK: tl.constexpr):
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        live = offs < total
        iw = offs % W
        ih = (offs // W) % H
        c = (offs // (W * H)) % C
        n = offs // (W * H * C)
        xv = tl.load(x_ptr + offs, mask=live, other=0.0).to(ACC)
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
                lse = tl.load(lse_ptr + o, mask=ok, other=0.0)
                gp = tl.where(ok, g * tl.exp(lv - lse), 0.0)
                grad_x += gp
                grad_logit += gp * (xv - yv)
        tl.store(grad_x_ptr + offs, grad_x.to(grad_x_ptr.dtype.element_ty), mask=live)
        tl.store(grad_logit_ptr + offs, grad_logit, mask=live)


@functools.lru_cache(maxsize=None)
def _kernels(interpret):
    """The jitted kernels; jitting is deferred so TRITON_INTERPRET is read when first used."""
    return triton.jit(lip2d_fwd), triton.jit(lip2d_bwd)


def _logit_layout(x, logit):
    """(logit channels, channel step): step 0 broadcasts a (N, 1, H, W) logit over x's channels."""
    return logit.shape[1], int(logit.shape[1] == x.shape[1])


def _acc(x):
    """Accumulation type: float64 for float64 inputs (exact gradchecks), else float32."""
    return tl.float64 if x.dtype == torch.float64 else tl.float32


def _grid(total):
    return ((total + _BLOCK - 1) // _BLOCK,)


def _kernels_now():
    return _kernels(bool(triton.knobs.runtime.interpret))


class _LIP2dTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, logit, kernel, stride, padding):
        x, logit = x.contiguous(), logit.contiguous()
        n, c, h, w = x.shape
        oh, ow = (h + 2 * padding - kernel) // stride + 1, (w + 2 * padding - kernel) // stride + 1
        out = x.new_empty((n, c, oh, ow), dtype=torch.promote_types(x.dtype, logit.dtype))
        lse = x.new_empty((n, c, oh, ow), dtype=torch.promote_types(x.dtype, torch.float32))
        fwd, _ = _kernels_now()
        fwd[_grid(out.numel())](x, logit, out, lse, out.numel(), c, h, w, oh, ow, *_logit_layout(x, logit),
                                KERNEL=kernel, STRIDE=stride, PADDING=padding, ACC=_acc(x), BLOCK=_BLOCK)
        ctx.save_for_backward(x, logit, out, lse)
        ctx.window = (kernel, stride, padding)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, logit, out, lse = ctx.saved_tensors
        kernel, stride, padding = ctx.window
        grad_x = torch.empty_like(x)
        grad_logit = torch.empty(x.shape, dtype=lse.dtype, device=x.device)
        _, bwd = _kernels_now()
        bwd[_grid(x.numel())](x, logit, out, lse, grad_out.contiguous(), grad_x, grad_logit,
                              x.numel(), *x.shape[1:], *out.shape[2:], *_logit_layout(x, logit),
                              KERNEL=kernel, STRIDE=stride, PADDING=padding, ACC=_acc(x), BLOCK=_BLOCK)
        if logit.shape[1] != x.shape[1]:
            grad_logit = grad_logit.sum(1, keepdim=True)
        return grad_x, grad_logit.to(logit.dtype), None, None, None


def lip2d_triton(x, logit, kernel=3, stride=2, padding=1):
    """lip2d by Triton kernels; saves x, logit, the output and a float32 log-sum per window.

    Args:
        x: (N, C, H, W) features on a CUDA device (or CPU with TRITON_INTERPRET=1).
        logit: (N, C, H, W) or (N, 1, H, W) logits.
    Returns:
        (N, C, H', W') in the promoted dtype of x and logit.
    """
    if not triton_usable(x):
        raise ValueError(
            f"lip2d: impl 'triton' needs CUDA tensors and the triton package (got a {x.device.type} "
            "tensor); use impl 'fused' or 'auto'"
        )
    return _LIP2dTriton.apply(x, logit, kernel, stride, padding)
