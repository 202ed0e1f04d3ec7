"""The memory-lean logit path (RECOMPUTE_LOGITS) against the plain modules: same values."""
import dataclasses

import pytest
import torch

from lip_det.layers import DownsampleSpec, lean_path_applies
from lip_det.modeling.backbone.densenet import DenseTransition
from lip_det.modeling.backbone.lip_resnet import LIPBasicBlock, LIPBottleneckBlock, LIPStem
from lip_lab.utils.memory import SavedTensors


def _randomise(module, seed=0):
    """Non-trivial weights everywhere (the zero-initialised heads would make logits flat)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * (0.3 if p.dim() > 1 else 0.5) + (p.dim() == 1))


def _run(module, x):
    """Outputs, gradients of x and of every parameter, and the bytes saved for backward."""
    x = x.clone().requires_grad_()
    saved = SavedTensors(excluded=list(module.parameters()))
    with saved.recording():
        out = module(x)
    out.mul(torch.linspace(-1, 1, out.numel()).view(out.shape)).sum().backward()
    grads = {"x": x.grad, **{n: p.grad for n, p in module.named_parameters()}}
    return out.detach(), grads, saved.extra


def _lean_and_plain(build, x):
    runs = {}
    for recompute in (True, False):
        torch.manual_seed(0)
        module = build(DownsampleSpec(recompute=recompute)).train()
        _randomise(module)
        runs[recompute] = _run(module, x)
    return runs[True], runs[False]


@pytest.mark.parametrize("build,shape", [
    (lambda spec: LIPBottleneckBlock(16, 32, bottleneck_channels=8, norm="BN", downsample=spec), (2, 16, 13, 10)),
    (lambda spec: LIPBasicBlock(16, 32, norm="BN", downsample=spec), (2, 16, 9, 12)),
    (lambda spec: LIPStem(3, 16, norm="BN", **dataclasses.asdict(spec)), (2, 3, 26, 21)),
    (lambda spec: DenseTransition(16, 8, downsample=spec), (2, 16, 13, 10)),
], ids=["bottleneck", "basic", "stem", "densenet transition"])
def test_lean_path_equals_the_modules(build, shape):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    (out, grads, saved), (ref_out, ref_grads, ref_saved) = _lean_and_plain(build, x)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-6)
    assert grads.keys() == ref_grads.keys()
    for name, ref in ref_grads.items():
        assert ref.abs().max() > 0, name
        torch.testing.assert_close(grads[name], ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item(), msg=name)
    assert saved < ref_saved  # the lean node ran (and kept less)


def test_lean_path_is_skipped_where_it_would_differ():
    spec = DownsampleSpec(recompute=True)
    lips, x = (spec.branch_pool(16), spec.branch_pool(16)), torch.randn(1, 16, 8, 8)
    trunk = spec.logit_trunk(16)
    assert lean_path_applies(lips, (x, x), trunk)
    assert not lean_path_applies(lips, (x.double().half(), x.half()), trunk)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not lean_path_applies(lips, (x, x), trunk)
    gn = DownsampleSpec(recompute=True, logit_norm="GN", logit_width=32)
    assert not lean_path_applies((gn.branch_pool(32),), (torch.randn(1, 32, 8, 8),))
    reference = DownsampleSpec(recompute=True, impl="reference")
    assert not lean_path_applies((reference.single_pool(16),), (x,))
