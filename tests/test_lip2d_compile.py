"""lip2d under torch.compile: custom ops, no graph breaks, eager values and gradients, no host syncs."""
import copy

import pytest
import torch
from detectron2.modeling import build_backbone
from torch.utils._python_dispatch import TorchDispatchMode

from lip_det.layers import LIP, ConvLogit
from lip_det.layers.lip2d.op import KERNELS
from helpers import repo_cfg

TRUNKS = {  # a LIP-ResNet-FPN trunk as each config family builds it, at depth 18 to compile fast
    "quick (BN, logits without norm)": ("quick/faster_rcnn_lip_r18_shapes.yaml",),
    "COCO (FrozenBN, frozen stem, IN logits)": (
        "faster_rcnn_lip_r50.yaml", "MODEL.RESNETS.DEPTH", 18, "MODEL.RESNETS.RES2_OUT_CHANNELS", 64),
}


@pytest.fixture
def impl(request):
    if request.param == "triton":
        request.getfixturevalue("triton_interpreter")
    return request.param


def _op_inputs(logit_channels):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 7, 8, dtype=torch.float64, generator=gen)
    logit = 12 * torch.rand(2, logit_channels, 7, 8, dtype=torch.float64, generator=gen)
    return x, logit


@pytest.mark.parametrize("impl", ["fused", "triton"], indirect=True)
@pytest.mark.parametrize("logit_channels", [3, 1])
def test_custom_ops_pass_opcheck(impl, logit_channels):
    """Schema, fake kernels against the real ones, autograd registration, AOT dispatch."""
    x, logit = _op_inputs(logit_channels)
    forward, _ = KERNELS[impl]
    out, saved = forward(x, logit, 3, 2, 1)
    checks = [
        (torch.ops.lip_det.lip2d_forward.default, (x.requires_grad_(), logit.requires_grad_(), 3, 2, 1, impl)),
        (torch.ops.lip_det.lip2d_backward.default, (torch.randn_like(out), x.detach(), logit.detach(), out,
                                                    list(saved), 3, 2, 1, impl)),
    ]
    for op, args in checks:
        results = torch.library.opcheck(op, args)
        assert set(results.values()) == {"SUCCESS"}, results


def _compiled_and_eager(model, x):
    """(outputs, input grad, parameter grads) of ``model`` eager and compiled (aot_eager, fullgraph)."""
    results = []
    for module in (model, torch.compile(copy.deepcopy(model), backend="aot_eager", fullgraph=True)):
        inp = x.clone().requires_grad_()
        out = module(inp)
        outs = list(out.values()) if isinstance(out, dict) else [out]
        loss = sum((o * torch.linspace(-1, 1, o.numel()).view_as(o)).sum() for o in outs)
        params = [p for p in module.parameters() if p.requires_grad]
        grads = torch.autograd.grad(loss, [inp, *params])
        results.append((outs, grads))
    return results


def _assert_no_graph_breaks(model, x):
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(model)(x)
    assert explanation.graph_break_count == 0, [str(b.reason) for b in explanation.break_reasons]
    assert explanation.graph_count == 1


@pytest.mark.parametrize("impl", ["auto", "fused", "triton"], indirect=True)
def test_lip_module_compiles_whole_and_matches_eager(impl):
    lip = LIP(ConvLogit(4, 4), impl=impl)
    torch.nn.init.normal_(lip.logit.conv.weight)  # logits spread over [0, 12]
    x = torch.randn(2, 4, 11, 9)
    _assert_no_graph_breaks(lip, x)
    (eager_out, eager_grads), (compiled_out, compiled_grads) = _compiled_and_eager(lip, x)
    torch.testing.assert_close(compiled_out, eager_out)
    torch.testing.assert_close(compiled_grads, eager_grads)


@pytest.mark.slow  # compiles a whole trunk: 10-30 s
@pytest.mark.parametrize("config", TRUNKS.values(), ids=TRUNKS.keys())
def test_lip_resnet_fpn_trunk_compiles_whole_and_matches_eager(config):
    """Detectron2's ResNet, FrozenBN and FPN compile whole too, with the LIP blocks inside."""
    torch.manual_seed(0)
    trunk = build_backbone(repo_cfg(*config)).train()
    for module in trunk.modules():  # non-zero logit heads, so the LIPs are not plain averages
        if isinstance(module, ConvLogit):
            torch.nn.init.normal_(module.conv.weight, std=0.1)
    x = torch.randn(2, 3, 64, 96)
    _assert_no_graph_breaks(trunk, x)
    (eager_out, eager_grads), (compiled_out, compiled_grads) = _compiled_and_eager(trunk, x)
    torch.testing.assert_close(compiled_out, eager_out, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(compiled_grads, eager_grads, rtol=1e-3, atol=1e-3)


class _NoHostReads(TorchDispatchMode):
    """Raises on the ops that copy a tensor value to the host: ``_local_scalar_dense`` (behind
    ``.item()``, ``float(t)``, ``int(t)``, ``bool(t)``, ``if t:``) and data-dependent shapes."""

    FORBIDDEN = (torch.ops.aten._local_scalar_dense.default, torch.ops.aten.nonzero.default)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in self.FORBIDDEN:
            raise AssertionError(f"host read of a tensor value: {func}")
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("impl", ["fused", "triton"], indirect=True)
@pytest.mark.parametrize("logit_scale", [12.0, 300.0])
def test_kernels_read_no_value_back_to_the_host(impl, logit_scale):
    """On a GPU each such read would wait for the device (torch.cuda.set_sync_debug_mode
    catches it there); here every aten op the forward and backward run passes through a
    dispatch mode that fails on them. Logits beyond float32's exp range included."""
    x, logit = _op_inputs(3)
    x, logit = x.float(), (logit * logit_scale / 12).float()
    forward, backward = KERNELS[impl]
    with _NoHostReads():
        out, saved = forward(x, logit, 3, 2, 1)
        grads = backward(torch.ones_like(out), x, logit, out, saved, 3, 2, 1)
    assert torch.isfinite(out).all() and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("config", TRUNKS.values(), ids=TRUNKS.keys())
def test_lip_trunk_runs_on_the_meta_device(config):
    """Meta tensors have shapes but no values: any host read in a forward or backward (of
    the LIP and logit modules, of Detectron2's blocks) raises there, as it would sync a GPU."""
    trunk = build_backbone(repo_cfg(*config)).train().to("meta")
    features = trunk(torch.empty(2, 3, 64, 96, device="meta", requires_grad=True))
    sum(f.sum() for f in features.values()).backward()
    assert all(f.device.type == "meta" for f in features.values())
    assert all(p.grad is not None for p in trunk.parameters() if p.requires_grad)
