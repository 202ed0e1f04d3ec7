"""lip2d implementations: same values and gradients as the formula, fp16/bf16-safe, traceable."""
import io
import itertools

import pytest
import torch
from fvcore.nn import FlopCountAnalysis

from lip_det.layers import LIP, ConvLogit, lip2d, lip2d_reference
from lip_det.layers.lip2d import window_average, window_average_transposed
from lip_lab.utils.memory import SavedTensors
from helpers import load_tool, repo_cfg

BENCHMARK = load_tool("benchmark")

WINDOWS = [(3, 2, 1), (2, 2, 0), (3, 1, 1), (5, 3, 2), (1, 1, 0), (4, 3, 2)]


def _inputs(size, logit_channels=2, scale=12.0, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 2, *size, dtype=dtype, generator=gen).requires_grad_()
    logit = (scale * torch.rand(1, logit_channels, *size, dtype=dtype, generator=gen)).requires_grad_()
    return x, logit


def _value_and_grads(fn, x, logit):
    out = fn(x, logit)
    grad = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
    return (out, *torch.autograd.grad(out, (x, logit), grad))


def _gradcheck_cases():
    """Every window at every size; the fast suite keeps the 1x1 inputs and the LIP window."""
    for size, window, logit_channels in itertools.product([(1, 1), (7, 8), (6, 5)], WINDOWS, [2, 1]):
        fast = size == (1, 1) or (window == (3, 2, 1) and logit_channels == 2)
        yield pytest.param(*window, size, logit_channels, marks=() if fast else pytest.mark.slow)


@pytest.mark.parametrize("kernel,stride,padding,size,logit_channels", _gradcheck_cases())
def test_fused_gradcheck(kernel, stride, padding, size, logit_channels):
    x, logit = _inputs(size, logit_channels)
    if min(size) + 2 * padding < kernel:  # no output for this window: one-line error
        with pytest.raises(ValueError, match="too small"):
            lip2d(x, logit, kernel, stride, padding, impl="fused")
        return
    assert torch.autograd.gradcheck(lambda a, b: lip2d(a, b, kernel, stride, padding, impl="fused"), (x, logit))


def test_fused_matches_reference_for_logits_beyond_exp_range():
    # exp(300) overflows float32; float64 still holds it, so the formula is exact there.
    x, logit = _inputs((9, 11), scale=300.0)
    for got, want in zip(_value_and_grads(lambda a, b: lip2d(a, b, impl="fused"), x, logit),
                         _value_and_grads(lip2d_reference, x, logit)):
        torch.testing.assert_close(got, want)


def _bottom_half(u):
    return (torch.arange(u.shape[2]) >= u.shape[2] // 2).view(-1, 1).to(u.dtype)


LOGITS = {  # uniform [0, 1) samples -> logits
    "gate range": lambda u: 12 * u,
    "float32 exp range": lambda u: 160 * u - 80,
    "two levels 140 apart": lambda u: 12 * u - 140 * _bottom_half(u),  # beyond float32's exp range
}


@pytest.mark.parametrize("impl", ["fused", "triton"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("logits", LOGITS.values(), ids=LOGITS.keys())
def test_matches_the_float64_formula_within_1e_5(request, impl, dtype, logits):
    """Values and gradients within 1e-5 of the largest magnitude, float32 and float64."""
    if impl == "triton":
        request.getfixturevalue("triton_interpreter")
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 17, 20, generator=gen, dtype=dtype).requires_grad_()
    logit = logits(torch.rand(2, 3, 17, 20, generator=gen, dtype=dtype)).requires_grad_()
    got = _value_and_grads(lambda a, b: lip2d(a, b, impl=impl), x, logit)
    exact = _value_and_grads(lip2d_reference, x.detach().double().requires_grad_(),
                             logit.detach().double().requires_grad_())
    for g, w in zip(got, exact):
        assert (g.double() - w).abs().max() <= 1e-5 * w.abs().max()


@pytest.mark.parametrize("kernel,stride,padding", WINDOWS)
@pytest.mark.parametrize("size,logit_channels", [((7, 8), 2), ((5, 5), 1), ((1, 1), 2)])
def test_triton_matches_reference(triton_interpreter, kernel, stride, padding, size, logit_channels):
    x, logit = _inputs(size, logit_channels)
    if min(size) + 2 * padding < kernel:  # no output for this window: one-line error
        with pytest.raises(ValueError, match="too small"):
            lip2d(x, logit, kernel, stride, padding, impl="triton")
        return
    window = (kernel, stride, padding)
    got = _value_and_grads(lambda a, b: lip2d(a, b, *window, impl="triton"), x, logit)
    want = _value_and_grads(lambda a, b: lip2d_reference(a, b, *window), x, logit)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


def test_triton_gradcheck(triton_interpreter):
    x, logit = _inputs((3, 4))
    assert torch.autograd.gradcheck(lambda a, b: lip2d(a, b, impl="triton"), (x[:1, :1], logit[:1, :1]))


def test_triton_on_cpu_without_interpreter_names_the_fix(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match="use impl 'fused' or 'auto'"):
        lip2d(torch.randn(1, 1, 4, 4), torch.randn(1, 1, 4, 4), impl="triton")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("impl", ["fused", "triton"])
def test_half_precision_at_gate_maximum_is_finite_and_accurate(request, dtype, impl):
    if impl == "triton":
        request.getfixturevalue("triton_interpreter")
    x, logit = _inputs((9, 10))
    with torch.no_grad():
        logit[:, :, ::2] = 12.0  # the gate's maximum: exp(12) = 162755 > float16's 65504
        logit[:, :, 1::2] = 0.0
    want = _value_and_grads(lip2d_reference, x, logit)
    xh, logith = x.detach().to(dtype).requires_grad_(), logit.detach().to(dtype).requires_grad_()
    got = _value_and_grads(lambda a, b: lip2d(a, b, impl=impl), xh, logith)
    assert got[0].dtype == dtype
    tol = 1e-2 if dtype == torch.float16 else 5e-2
    for g, w in zip(got, want):
        assert torch.isfinite(g).all()
        torch.testing.assert_close(g.double(), w, rtol=tol, atol=tol)
    if dtype == torch.float16:  # the flaw these impls fix
        assert not torch.isfinite(lip2d_reference(xh, logith)).all()


def test_lip_module_trains_under_bfloat16_autocast():
    lip = LIP(ConvLogit(8, 8))
    torch.nn.init.normal_(lip.logit.conv.weight, std=3.0)  # logits spread over [0, 12]
    x = torch.randn(2, 8, 15, 15, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = lip(x)
    out.float().square().sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()
    assert torch.isfinite(lip.logit.conv.weight.grad).all()


def test_fused_keeps_nothing_full_size_beyond_its_inputs():
    x, logit = _inputs((16, 16), dtype=torch.float32)
    kept = {}
    for impl in ("reference", "fused"):
        saved = SavedTensors(excluded=(x, logit))
        with saved.recording():
            out = lip2d(x, logit, impl=impl)
        saved.exclude(out)
        kept[impl] = saved.extra
    full = x.numel() * x.element_size()
    assert kept["reference"] >= 2 * full  # exp(logit) and x * exp(logit)
    planes = x.shape[0] * x.shape[1]
    assert kept["fused"] <= full / 4 + planes * x.element_size()  # pooled weights, a shift per plane


class _Pool(torch.nn.Module):
    def __init__(self, impl):
        super().__init__()
        self.lip = LIP(ConvLogit(4, 4), impl=impl)

    def forward(self, x):
        return self.lip(x)


@pytest.mark.parametrize("impl", ["auto", "fused"])
def test_jit_trace_exports_and_matches_eager(impl):
    model = _Pool(impl).eval()
    torch.nn.init.normal_(model.lip.logit.conv.weight)
    x = torch.randn(1, 4, 11, 9)
    traced = torch.jit.trace(model, x)
    assert "PythonOp" not in str(traced.graph)
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer)
    buffer.seek(0)
    loaded = torch.jit.load(buffer)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
        torch.testing.assert_close(loaded(x), lip2d_reference(x, model.lip.logit(x)))


def test_fvcore_counts_the_same_flops_for_every_impl():
    x = torch.randn(1, 4, 16, 16)
    flops = {impl: FlopCountAnalysis(_Pool(impl), x).unsupported_ops_warnings(False).total()
             for impl in ("reference", "fused", "auto")}
    assert flops["reference"] > 0 and len(set(flops.values())) == 1


def test_op_benchmark_reports_ratios_against_the_reference():
    rows, copy_bytes_per_s = BENCHMARK.benchmark_op((1, 4, 16, 16), repeats=1)
    rows = {r["name"]: r for r in rows}
    assert copy_bytes_per_s > 0
    reference = rows["lip2d reference"]
    input_mib = 4 * 16 * 16 * 4 / 2**20
    assert reference["extra_mib"] >= 2 * input_mib  # exp(logit) and x * exp(logit)
    fused = rows["lip2d fused"]
    assert fused["extra_ratio"] == pytest.approx(fused["extra_mib"] / reference["extra_mib"])
    assert fused["extra_ratio"] < 1 / 3
    assert {"max_pool2d 3x3/2", "avg_pool2d 3x3/2"} <= rows.keys()
    for name, row in rows.items():
        assert row["ms"] > 0 and row["speedup"] == pytest.approx(reference["ms"] / row["ms"])
        if name.startswith("lip2d"):  # bandwidth of the fewest bytes lip2d moves, and its share of a copy
            assert row["gbps"] == pytest.approx(BENCHMARK.lip2d_fewest_bytes(
                torch.empty(1, 4, 16, 16), torch.empty(1, 4, 8, 8)) / row["ms"] / 1e6)
            assert row["copy_share"] == pytest.approx(row["gbps"] * 1e9 / copy_bytes_per_s)


_SMALL_DETECTOR = ["MODEL.RESNETS.DEPTH", 18, "MODEL.RESNETS.RES2_OUT_CHANNELS", 64,
                   "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 64, "MODEL.RPN.POST_NMS_TOPK_TRAIN", 100]


@pytest.mark.slow
def test_pooling_benchmark_has_one_row_per_operator_beside_vanilla():
    cfgs = BENCHMARK.pooling_cfgs(lambda name, *opts: repo_cfg(name, *_SMALL_DETECTOR, *opts), ["lip", "max", "softpool"])
    assert [cfg.MODEL.LIP.POOLING for cfg in cfgs.values()][1:] == ["lip", "max", "softpool"]
    rows = BENCHMARK.benchmark_models(cfgs, image_size=(64, 96), batch_size=1, repeats=1)
    assert list(rows) == ["vanilla", "lip", "max", "softpool"]
    for pooling in ("max", "softpool"):  # parameter-free: the LIP trunk without its logit modules
        assert rows[pooling]["backbone_params"] == rows["max"]["backbone_params"] < rows["lip"]["backbone_params"]
        assert rows[pooling]["gflops"] < rows["lip"]["gflops"]
    for row in rows.values():
        ratios = [row[f"{key}_ratio"] for key in ("train_ms", "saved_mib", "backbone_params", "gflops")]
        assert all(0 < ratio < float("inf") for ratio in ratios), row
        assert row["saved_mib_ratio"] == pytest.approx(row["saved_mib"] / rows["vanilla"]["saved_mib"])


def test_backbone_benchmark_puts_flops_beside_time_and_memory():
    small = ["MODEL.RESNETS.DEPTH", 18, "MODEL.RESNETS.RES2_OUT_CHANNELS", 64]
    cfgs = {"vanilla": repo_cfg("faster_rcnn_r50.yaml", *small), "lip": repo_cfg("faster_rcnn_lip_r50.yaml", *small),
            "lip plain": repo_cfg("faster_rcnn_lip_r50.yaml", *small, "MODEL.LIP.RECOMPUTE_LOGITS", False)}
    rows = BENCHMARK.benchmark_backbones(cfgs, (64, 96), batch_size=1, repeats=2, profile_rows=3)
    assert list(rows) == ["vanilla", "lip", "lip plain"]
    assert rows["lip"]["gflops"] == rows["lip plain"]["gflops"] > rows["vanilla"]["gflops"]
    assert rows["lip"]["saved_mib"] < rows["lip plain"]["saved_mib"]
    for row in rows.values():
        assert row["gflops_ratio"] == pytest.approx(row["gflops"] / rows["vanilla"]["gflops"])
        low, high = row["ms_ratio_spread"]
        assert 0 < low <= high and row["ms"] > 0
        assert "Self CPU" in row["profile"]


@pytest.mark.slow
def test_lip_faster_rcnn_trains_under_bfloat16_autocast():
    cfg = repo_cfg("faster_rcnn_lip_r50.yaml", *_SMALL_DETECTOR)
    losses = BENCHMARK.amp_check(cfg, iterations=3, image_size=(64, 96), batch_size=1)
    assert len(losses) == 3 and all(loss > 0 for loss in losses)


@pytest.mark.parametrize("kernel,stride,padding", WINDOWS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("size", [(13, 10), (12, 16)])
def test_window_average_and_its_transpose_equal_average_pooling(kernel, stride, padding, dtype, size):
    """The oneDNN depthwise-conv path (CPU float32) and the pooling path (float64) against
    ``F.avg_pool2d`` and its autograd backward."""
    x = torch.randn(2, 5, *size, dtype=dtype, generator=torch.Generator().manual_seed(0)).requires_grad_()
    pooled = torch.nn.functional.avg_pool2d(x, kernel, stride, padding)
    grad = torch.randn(pooled.shape, dtype=dtype, generator=torch.Generator().manual_seed(1))
    pooled.backward(grad)
    torch.testing.assert_close(window_average(x.detach(), kernel, stride, padding), pooled.detach())
    torch.testing.assert_close(window_average_transposed(grad, x.detach(), kernel, stride, padding), x.grad)
