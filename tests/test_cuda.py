"""lip2d and the LIP blocks on a CUDA GPU: values and gradients against float64, no host syncs.

These run only where CUDA is (``tools/gpu_check.sh`` runs them first); everywhere else the same
kernels are tested in Triton's interpreter (test_lip2d_triton.py, test_lip2d_gated.py).
"""
import pytest
import torch
from detectron2.modeling import build_backbone

from lip_det.layers import LIP, ConvLogit, DownsampleSpec, lip2d, lip2d_reference
from lip_det.layers.lip2d.auto import auto_impl
from lip_det.modeling.backbone.lip_resnet import LIPBottleneckBlock
from helpers import repo_cfg

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CUDA = torch.device("cuda")
TOLERANCE = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}
"""Largest error allowed, relative to the largest magnitude of the float64 result on the same
(rounded) inputs: a few roundings of the dtype."""
SHAPES = [((2, 3, 17, 20), 3), ((2, 4, 9, 8), 1), ((3, 5, 1, 1), 5), ((2, 4, 2, 2), 4), ((1, 64, 67, 93), 64)]


def _value_and_grads(fn, x, logit):
    x, logit = x.detach().requires_grad_(), logit.detach().requires_grad_()
    out = fn(x, logit)
    grad = torch.linspace(-1, 1, out.numel(), device=out.device, dtype=torch.float64).view(out.shape)
    return (out, *torch.autograd.grad(out, (x, logit), grad.to(out.dtype)))


@pytest.mark.parametrize("impl", ["fused", "triton", "auto"])
@pytest.mark.parametrize("dtype", list(TOLERANCE), ids=str)
@pytest.mark.parametrize("scale", [1.0, 12.0, 80.0])
@pytest.mark.parametrize("shape,logit_channels", SHAPES, ids=str)
def test_lip2d_matches_float64_on_cuda(impl, dtype, scale, shape, logit_channels):
    gen = torch.Generator(CUDA).manual_seed(0)
    x = torch.randn(shape, generator=gen, device=CUDA, dtype=torch.float64)
    logit = scale * torch.rand(shape[0], logit_channels, *shape[2:], generator=gen, device=CUDA, dtype=torch.float64)
    x, logit = x.to(dtype), logit.to(dtype)
    exact = _value_and_grads(lip2d_reference, x.double(), logit.double())
    got = _value_and_grads(lambda a, b: lip2d(a, b, impl=impl), x, logit)
    # d out / d logit = p (x - out): its scale is the output gradient's times x's range, whatever
    # its values (all 0 where one window covers a 1x1 plane, tiny where one position dominates)
    logit_scale = exact[1].abs().max() * (x.max() - x.min()).double()
    for name, g, e, scale in zip(("output", "grad x", "grad logit"), got, exact,
                                 (exact[0].abs().max(), exact[1].abs().max(), logit_scale)):
        assert g.dtype == dtype and torch.isfinite(g).all(), name
        error = (g.double() - e).abs().max() / scale
        assert error <= TOLERANCE[dtype], f"{name}: {error:.2e}"


@pytest.mark.parametrize("dtype", list(TOLERANCE), ids=str)
def test_auto_picks_triton_on_cuda(dtype):
    assert auto_impl(CUDA, dtype, dtype) == "triton"


def _randomise(module, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            p.copy_(noise * (0.3 if p.dim() > 1 else 0.5) + (p.dim() == 1))


def _run(module, *inputs):
    inputs = [t.clone().requires_grad_() for t in inputs]
    out = module(*inputs)
    weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype, device=out.device).view(out.shape)
    return [out.detach(), *torch.autograd.grad(out.mul(weights).sum(), inputs + list(module.parameters()))]


@pytest.mark.parametrize("norm", ["IN", ""])
def test_gated_head_equals_the_modules_in_float64(norm):
    gen = torch.Generator(CUDA).manual_seed(1)
    x = torch.randn(2, 8, 33, 30, generator=gen, device=CUDA, dtype=torch.float64)
    runs = []
    for impl in ("triton", "fused"):
        torch.manual_seed(0)
        lip = LIP(ConvLogit(8, 8, 3, norm=norm), impl=impl).to(CUDA, torch.float64)
        _randomise(lip)
        assert lip.runs_gated(x) == (impl == "triton")
        runs.append(_run(lip, x))
    for got, want in zip(*runs):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10 * want.abs().max().item())


def test_lip_block_on_cuda_equals_the_modules_in_float64():
    x = torch.randn(2, 32, 29, 26, generator=torch.Generator(CUDA).manual_seed(2), device=CUDA, dtype=torch.float64)
    runs = []
    for impl in ("triton", "fused"):
        torch.manual_seed(0)
        block = LIPBottleneckBlock(32, 64, bottleneck_channels=16, norm="BN",
                                   downsample=DownsampleSpec(impl=impl, recompute=False)).to(CUDA, torch.float64)
        _randomise(block)
        runs.append(_run(block.train(), x))
    for got, want in zip(*runs):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10 * want.abs().max().item())


@pytest.mark.parametrize("dtype", [None, torch.float16], ids=["float32", "autocast float16"])
def test_lip_backbone_step_makes_no_host_sync(dtype):
    cfg = repo_cfg("faster_rcnn_lip_r50.yaml", "MODEL.DEVICE", "cuda")
    backbone = build_backbone(cfg).to(CUDA).train()
    images = torch.randn(2, 3, 256, 320, device=CUDA)
    autocast = torch.autocast("cuda", dtype=dtype, enabled=dtype is not None)
    with autocast:
        sum(o.float().sum() for o in backbone(images).values()).backward()  # warm-up: autotuning, self-check
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        with autocast:
            outputs = backbone(images)
        sum(o.float().sum() for o in outputs.values()).backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(torch.isfinite(p.grad).all() for p in backbone.parameters() if p.grad is not None)
