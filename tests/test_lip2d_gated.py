"""The gated Triton path (a LIP head's norm, gate and lip2d in one launch each way) against
the modules, in Triton's interpreter: same values and gradients, fp16/bf16 finite."""
import dataclasses

import pytest
import torch

from lip_det.layers import LIP, ConvLogit, DownsampleSpec, gated_lip2d
from lip_det.modeling.backbone.densenet import DenseTransition
from lip_det.modeling.backbone.lip_resnet import LIPBottleneckBlock, LIPStem

pytestmark = pytest.mark.usefixtures("triton_interpreter")


def _randomise(module, seed=0):
    """Non-trivial weights everywhere (zero-initialised heads would make logits flat)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * (0.3 if p.dim() > 1 else 0.5) + (p.dim() == 1))


def _run(module, *inputs):
    """Output, then the gradients of every input and parameter, for a fixed output gradient."""
    inputs = [t.clone().requires_grad_() for t in inputs]
    out = module(*inputs)
    weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view(out.shape)
    params = list(module.parameters())
    grads = torch.autograd.grad(out.mul(weights).sum(), inputs + params)
    return [out.detach(), *grads]


def _lip(norm, impl, channels=3, in_channels=5, kernel=3):
    torch.manual_seed(0)
    lip = LIP(ConvLogit(in_channels, channels, kernel, norm=norm), impl=impl).double()
    _randomise(lip)
    return lip


@pytest.mark.parametrize("norm", ["IN", ""], ids=["instance norm", "no norm"])
@pytest.mark.parametrize("size", [(9, 8), (7, 11), (1, 1), (2, 2)])
def test_gated_equals_the_modules_in_float64(norm, size):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, *size, generator=gen, dtype=torch.float64)
    source = torch.randn(2, 5, *size, generator=gen, dtype=torch.float64)
    gated, plain = _lip(norm, "triton"), _lip(norm, "fused")
    assert gated.runs_gated(x) and not plain.runs_gated(x)
    for got, want in zip(_run(gated, x, source), _run(plain, x, source)):
        scale = want.abs().max().item()
        if min(size) > 2:  # one window covering a plane: shifting its logits changes nothing
            assert scale > 1e-3
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10 * max(scale, 1.0))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_gated_half_precision_is_finite_and_close_to_float32(dtype):
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 4, 15, 13, generator=gen)
    z = 4 * torch.randn(2, 4, 15, 13, generator=gen)
    norm = torch.nn.InstanceNorm2d(4, affine=True)
    want = gated_lip2d(x, z, norm, 12.0, (3, 2, 1))
    got = gated_lip2d(x.to(dtype), z.to(dtype), norm, 12.0, (3, 2, 1))
    assert got.dtype == dtype and torch.isfinite(got).all()
    tol = 1e-2 if dtype == torch.float16 else 5e-2
    torch.testing.assert_close(got.float(), want, rtol=tol, atol=tol)


def test_gated_half_precision_gradients_are_finite():
    x = torch.randn(2, 4, 9, 9).half().requires_grad_()
    z = (30 * torch.randn(2, 4, 9, 9)).half().requires_grad_()
    norm = torch.nn.InstanceNorm2d(4, affine=True)
    out = gated_lip2d(x, z, norm, 30.0, (3, 2, 1))
    out.float().square().sum().backward()
    assert x.grad.dtype == z.grad.dtype == torch.float16
    for t in (x.grad, z.grad, norm.weight.grad, norm.bias.grad):
        assert torch.isfinite(t).all()


@pytest.mark.parametrize("build,shape", [
    (lambda spec: LIPBottleneckBlock(16, 32, bottleneck_channels=8, norm="BN", downsample=spec), (2, 16, 13, 10)),
    (lambda spec: LIPStem(3, 16, norm="BN", **dataclasses.asdict(spec)), (2, 3, 26, 21)),
    (lambda spec: DenseTransition(16, 8, downsample=spec), (2, 16, 13, 10)),  # 2x2/2 windows
], ids=["bottleneck", "stem", "densenet transition"])
def test_blocks_on_the_gated_path_equal_the_modules(build, shape):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    runs = []
    for impl in ("triton", "fused"):
        torch.manual_seed(0)
        block = build(DownsampleSpec(impl=impl, recompute=False)).double().train()
        _randomise(block)
        runs.append(_run(block, x))
    for got, want in zip(*runs):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10 * want.abs().max().item())

