"""The Triton path: the self-check that gates impl "auto", offset width, compiling for GPUs."""
import logging
import re
import subprocess

import pytest
import torch
import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from triton.runtime.errors import OutOfResources, PTXASError

from lip_det.layers import lip2d
from lip_det.layers.lip2d import auto as lip2d_auto, triton_kernels as lip2d_triton
from lip_det.layers.lip2d.auto import auto_impl, triton_passes_self_check, triton_self_check
from lip_det.layers.lip2d.op import KERNELS

CPU = torch.device("cpu")
TRITON_FAILURES = [  # what Triton raises when it cannot compile or launch on a machine
    PTXASError("ptxas fatal   : Value 'sm_120a' is not defined for option 'gpu-name'"),
    OutOfResources(232448, 101376, "shared memory"),
    RuntimeError("PassManager::run failed\nerror: failures have been detected while processing an MLIR pass"),
    subprocess.CalledProcessError(1, ["gcc", "cuda_utils.c", "-lcuda"]),
]


@pytest.fixture
def fresh_self_check():
    triton_passes_self_check.cache_clear()
    yield
    triton_passes_self_check.cache_clear()


@pytest.fixture
def auto_on_cpu(monkeypatch, triton_interpreter, fresh_self_check):
    """impl "auto" treats the CPU (through Triton's interpreter) as it treats CUDA."""
    monkeypatch.setattr(lip2d_auto, "AUTO_TRITON_DEVICES", ("cuda", "cpu"))


@pytest.fixture
def kernel_launches(monkeypatch):
    """Counts lookups of the jitted kernels: one per Triton forward or backward launch."""
    launches = []
    kernels = lip2d_triton._kernels

    def counted(interpret):
        launches.append(interpret)
        return kernels(interpret)

    monkeypatch.setattr(lip2d_triton, "_kernels", counted)
    return launches


def _forward_backward(impl, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, 9, 8, generator=gen, requires_grad=True)
    logit = (12 * torch.rand(2, 3, 9, 8, generator=gen)).requires_grad_()
    out = lip2d(x, logit, impl=impl)
    return (out, *torch.autograd.grad(out.square().sum(), (x, logit)))


@pytest.mark.parametrize("x_dtype,logit_dtype", [
    (torch.float32, torch.float32), (torch.float16, torch.float16), (torch.bfloat16, torch.float32),
    (torch.float64, torch.float64)])
def test_self_check_passes_for_working_kernels(triton_interpreter, x_dtype, logit_dtype):
    assert triton_self_check(CPU, x_dtype, logit_dtype) is None


@pytest.mark.parametrize("result,name", [(0, "output"), (1, "grad x"), (2, "grad logit")])
def test_self_check_names_a_result_that_differs_from_fused(triton_interpreter, monkeypatch, result, name):
    forward, backward = KERNELS["triton"]

    def off_by_1_percent(results, index):
        return tuple(r * 1.01 if i == index else r for i, r in enumerate(results))

    if result == 0:
        wrong = (lambda *args: off_by_1_percent(forward(*args), 0), backward)
    else:
        wrong = (forward, lambda *args: off_by_1_percent(backward(*args), result - 1))
    monkeypatch.setitem(KERNELS, "triton", wrong)
    failure = triton_self_check(CPU, torch.float32, torch.float32)
    assert failure.startswith(f"its {name} differs from 'fused' by up to")


def test_auto_runs_triton_once_it_passed_its_check(auto_on_cpu, kernel_launches, caplog, monkeypatch):
    checks = []

    def counted_check(*key):
        checks.append(key)
        return triton_self_check(*key)

    monkeypatch.setattr(lip2d_auto, "triton_self_check", counted_check)
    with caplog.at_level(logging.WARNING, logger="lip_det"):
        auto = _forward_backward("auto")
        auto_again = _forward_backward("auto", seed=1)
    assert checks == [(CPU, torch.float32, torch.float32)]  # once per device and dtypes
    assert len(kernel_launches) == 2 + 2 + 2  # the check's forward and backward, then two calls
    assert not caplog.records
    torch.testing.assert_close(auto, _forward_backward("triton"), rtol=0, atol=0)
    torch.testing.assert_close(auto_again, _forward_backward("triton", seed=1), rtol=0, atol=0)


def test_compiled_auto_runs_the_check_while_tracing_and_breaks_no_graph(auto_on_cpu, kernel_launches, caplog):
    x, logit = torch.randn(2, 3, 9, 8), 12 * torch.rand(2, 3, 9, 8)
    torch._dynamo.reset()
    compiled = torch.compile(lambda a, b: lip2d(a, b), backend="aot_eager", fullgraph=True)
    with caplog.at_level(logging.WARNING, logger="lip_det"):
        out = compiled(x, logit)
    assert triton_passes_self_check.cache_info().currsize == 1 and not caplog.records  # on real tensors
    assert len(kernel_launches) == 2 + 1  # the check's forward and backward, then the compiled forward
    torch.testing.assert_close(out, lip2d(x, logit, impl="triton"), rtol=0, atol=0)


@pytest.mark.parametrize("error", TRITON_FAILURES, ids=lambda e: type(e).__name__)
def test_failing_check_warns_once_and_auto_runs_fused(auto_on_cpu, monkeypatch, caplog, error):
    attempts = []

    def broken(interpret):
        attempts.append(interpret)
        raise error

    monkeypatch.setattr(lip2d_triton, "_kernels", broken)
    with caplog.at_level(logging.WARNING, logger="lip_det"):
        results = [_forward_backward("auto", seed) for seed in (0, 1)]
    assert len(attempts) == 1  # the check's first launch; nothing tries Triton again
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert "\n" not in message and "impl 'auto' uses 'fused'" in message
    assert f"{type(error).__name__}: {' '.join(str(error).split())}" in message
    for seed, got in zip((0, 1), results):
        torch.testing.assert_close(got, _forward_backward("fused", seed), rtol=0, atol=0)


def test_other_errors_in_the_check_are_not_swallowed(auto_on_cpu, monkeypatch):
    def buggy(interpret):
        raise TypeError("lip2d_fwd() got an unexpected keyword argument 'BLOK'")

    monkeypatch.setattr(lip2d_triton, "_kernels", buggy)
    with pytest.raises(TypeError, match="BLOK"):
        lip2d(torch.randn(1, 1, 5, 5), torch.rand(1, 1, 5, 5))


def test_auto_never_runs_the_interpreter_by_itself(triton_interpreter, fresh_self_check, kernel_launches):
    assert auto_impl(CPU, torch.float32, torch.float32) == "fused"
    _forward_backward("auto")
    assert kernel_launches == []


@pytest.mark.parametrize("shape,needs_int64", [
    ((20, 32, 128, 128), False),  # the op benchmark's size
    ((2, 256, 1344, 800), False),  # a stem at 2688 x 1600 input
    ((1, 1, 2**15, 2**15), False),  # 2**30 elements
    ((2, 1, 2**15, 2**15), True),  # 2**31 elements
])
def test_offsets_are_int64_only_past_int32s_range(shape, needs_int64):
    x = torch.empty(shape, device="meta")
    out = torch.empty(shape[:2] + ((shape[2] + 1) // 2, (shape[3] + 1) // 2), device="meta")
    assert lip2d_triton.offsets_need_int64(x, out, 3) == needs_int64


@pytest.mark.parametrize("logit_channels", [3, 1])
def test_int64_offsets_give_the_same_results(triton_interpreter, monkeypatch, logit_channels):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 9, 8, generator=gen, dtype=torch.float64)
    logit = 12 * torch.rand(2, logit_channels, 9, 8, generator=gen, dtype=torch.float64)
    forward, backward = KERNELS["triton"]
    results = []
    for wide in (False, True):
        monkeypatch.setattr(lip2d_triton, "offsets_need_int64", lambda *args: wide)
        out, saved = forward(x, logit, 5, 3, 2)
        results.append((out, *saved, *backward(torch.ones_like(out), x, logit, out, saved, 5, 3, 2)))
    torch.testing.assert_close(results[0], results[1], rtol=0, atol=0)


def _compile(kernel, index_64, gated, target):
    """Compiles a kernel to a cubin without a GPU (LLVM and ptxas ship with Triton)."""
    fn = kernel.fn
    float32_pointers = ("lse_ptr", "grad_logit_ptr", "scale_ptr", "shift_ptr")  # the rest are float16

    def arg_type(name):
        if name.endswith("_ptr"):
            return "*fp32" if name in float32_pointers else "*fp16"
        return "fp32" if name == "coeff" else "i32"

    signature = {p.name: "constexpr" if p.is_constexpr else arg_type(p.name) for p in fn.params}
    constexprs = dict(KERNEL=3, STRIDE=2, PADDING=1, GATED=gated, NORMED=gated, ACC=tl.float32,
                      INDEX_64=index_64, BH=16, BW=64)
    return triton.compile(ASTSource(fn, signature, constexprs=constexprs), target=target,
                          options={"num_warps": 8})


@pytest.mark.parametrize("gated", [False, True], ids=["logits", "gated"])
@pytest.mark.parametrize("which", [0, 1], ids=["forward", "backward"])
@pytest.mark.parametrize("index_64", [False, True], ids=["int32", "int64"])
def test_kernels_compile_for_a_gpu_with_the_offsets_asked_for(which, index_64, gated):
    """Tiles of one plane: no element's offset is ever divided; the plane's offset is 64-bit
    only when asked for."""
    compiled = _compile(lip2d_triton._kernels(False)[which], index_64, gated, GPUTarget("cuda", 90, 32))
    assert len(compiled.asm["cubin"]) > 0
    ttgir = compiled.asm["ttgir"]
    assert not re.findall(r"arith\.(?:divsi|remsi) .*: tensor<[\dx]+xi64[,>]", ttgir)
    assert bool(re.findall(r"arith\.(?:divsi|remsi) .*: i64", ttgir)) == index_64
