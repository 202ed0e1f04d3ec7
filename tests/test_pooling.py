"""The pooling family at LIP's slots, each against a formula written here from shifted slices."""
import math

import pytest
import torch
import torch.nn.functional as F

import lip_det
from lip_det import LIPConfigError, get_lip_cfg
from lip_det.layers import (
    POOLING_OPERATORS,
    POOLINGS,
    AvgPool,
    BlurPool,
    DownsampleSpec,
    LpPool,
    S3Pool,
    binomial_filter,
    create_pool,
    lip2d,
    lp_pool2d,
    s3pool_sample,
    soft_pool2d,
    stochastic_pool2d,
)
from lip_det.modeling.backbone import LIPBasicBlock, LIPBottleneckBlock

PARAMETER_FREE = list(POOLING_OPERATORS)
STOCHASTIC = ("stochastic", "s3pool")
SIZES = [(1, 1), (1, 7), (2, 2), (5, 5), (7, 8), (33, 31)]


def pool_for(name, **params):
    return create_pool(DownsampleSpec(pooling=name, **params))


def features(n=2, c=3, h=7, w=8, dtype=torch.float64, scale=1.0, seed=0):
    """Random features with a positive value at every (even, even) position, so every 3x3/2
    window holds one (stochastic pooling's probabilities are then defined everywhere)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, dtype=dtype, generator=gen)
    x[:, :, ::2, ::2] = torch.rand(x[:, :, ::2, ::2].shape, dtype=dtype, generator=gen) + 0.1
    return (scale * x).requires_grad_()


# ---- independent formulas -------------------------------------------------------------------

def slot_windows(x, kernel=3, stride=2, padding=1):
    """Windows (N, C, k*k, H', W') cut from a NaN-padded copy, and where they are valid."""
    h, w = x.shape[-2:]
    out_h, out_w = (h + 2 * padding - kernel) // stride + 1, (w + 2 * padding - kernel) // stride + 1
    padded = F.pad(x, (padding,) * 4, value=float("nan"))
    parts = [padded[:, :, i : i + stride * (out_h - 1) + 1 : stride, j : j + stride * (out_w - 1) + 1 : stride]
             for i in range(kernel) for j in range(kernel)]
    windows = torch.stack(parts, 2)
    valid = ~torch.isnan(windows)
    return torch.where(valid, windows, torch.zeros_like(windows)), valid


def lp_formula(p):
    return lambda w, v: (w.abs().pow(p).sum(2) / v.sum(2)).pow(1 / p)


WINDOW_FORMULAS = {
    "max": lambda w, v: torch.where(v, w, -math.inf).amax(2),
    "min": lambda w, v: torch.where(v, w, math.inf).amin(2),
    "avg": lambda w, v: w.sum(2) / v.sum(2),
    "sum": lambda w, v: w.sum(2),
    "l2": lp_formula(2.0),
    "lp": lp_formula(3.0),
    "softpool": lambda w, v: (v * w.exp() * w).sum(2) / (v * w.exp()).sum(2),
    "stochastic": lambda w, v: w.relu().square().sum(2) / w.relu().sum(2),  # eval: sum a^2 / sum a
}


def peak_2x2(x):
    """max(x[i..i+1, j..j+1]) with the window clipped at the bottom / right border."""
    h, w = x.shape[-2:]
    below = (torch.arange(h) + 1).clamp(max=h - 1)
    right = (torch.arange(w) + 1).clamp(max=w - 1)
    rows = torch.maximum(x, x[:, :, below])
    return torch.maximum(rows, rows[:, :, :, right])


BINOMIAL_ROWS = {2: [1, 1], 3: [1, 2, 1], 4: [1, 3, 3, 1], 5: [1, 4, 6, 4, 1]}


def blur_formula(x, size):
    """2x2 max, then taps at 2o + t - (size - 1) // 2 clamped into the map (replicate)."""
    peak = peak_2x2(x)
    row = torch.tensor(BINOMIAL_ROWS[size], dtype=x.dtype)
    row = row / row.sum()

    def taps(n):
        centre = 2 * torch.arange(-(-n // 2))
        return [(centre + t - (size - 1) // 2).clamp(0, n - 1) for t in range(size)]

    h, w = x.shape[-2:]
    return sum(row[t] * row[u] * peak[:, :, rows][:, :, :, cols]
               for t, rows in enumerate(taps(h)) for u, cols in enumerate(taps(w)))


def formula(name, x):
    """The eval-mode value of operator ``name`` from the formulas above."""
    if name in WINDOW_FORMULAS:
        return WINDOW_FORMULAS[name](*slot_windows(x))
    if name == "s3pool":
        return peak_2x2(x)[:, :, ::2, ::2]
    assert name == "blur"
    return blur_formula(x, 3)


def value_and_grad(fn, x):
    out = fn(x)
    grad_out = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
    return out, torch.autograd.grad(out, x, grad_out)[0]


# ---- every operator ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", POOLINGS)
def test_output_size_is_the_slots_for_every_input_size(name):
    # No logit norm: InstanceNorm itself refuses a 1x1 map in training.
    pool = DownsampleSpec(pooling=name, logit_norm="").single_pool(3)
    for size in SIZES:
        x = torch.rand(2, 3, *size)
        want = F.avg_pool2d(x, 3, 2, 1).shape
        for training in (True, False):
            pool.train(training)
            assert pool(x).shape == want, (size, training)


@pytest.mark.parametrize("name", PARAMETER_FREE)
def test_eval_value_and_gradient_equal_the_formula(name):
    pool = pool_for(name).eval()
    x = features()
    got = value_and_grad(pool, x)
    want = value_and_grad(lambda t: formula(name, t), x)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


@pytest.mark.parametrize("name", PARAMETER_FREE)
def test_gradcheck_in_float64(name):
    pool = pool_for(name)
    x = features(1, 2, 5, 6)
    sample = s3pool_sample(5, 6, 4)

    def train_step(t):  # the same draw on every call: a fixed, differentiable function
        torch.manual_seed(0)
        return pool(t, sample) if name == "s3pool" else pool(t)

    assert torch.autograd.gradcheck(pool.eval(), (x,))
    if name in STOCHASTIC:
        eval_out = pool(x)
        pool.train()
        assert not torch.equal(train_step(x), eval_out)  # really the training path
        assert torch.autograd.gradcheck(train_step, (x,))


@pytest.mark.parametrize("name", PARAMETER_FREE)
def test_eval_is_deterministic_and_only_stochastic_ops_depend_on_mode(name):
    pool = pool_for(name)
    x = features(h=16, w=16)
    outputs = {}
    for seed in (0, 1):
        torch.manual_seed(seed)
        outputs["eval", seed] = pool.eval()(x)
        torch.manual_seed(seed)
        outputs["train", seed] = pool.train()(x)
    assert torch.equal(outputs["eval", 0], outputs["eval", 1])
    assert torch.equal(outputs["train", 0], outputs["train", 1]) == (name not in STOCHASTIC)
    assert torch.equal(outputs["train", 0], outputs["eval", 0]) == (name not in STOCHASTIC)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", PARAMETER_FREE)
def test_half_precision_is_finite_on_large_inputs(name, dtype):
    """|x| up to ~700: exp(x) overflows even float32 (not float64), |x|^3 overflows float16."""
    x = features(2, 4, 13, 11, scale=200.0)
    want = formula(name, x).detach()
    half = x.detach().to(dtype).requires_grad_()
    pool = pool_for(name)
    for training in (False, True):
        out = pool.train(training)(half)
        assert out.dtype == dtype and torch.isfinite(out).all()
        out.float().square().mean().backward()
        assert torch.isfinite(half.grad).all()
    tol = 2e-2 if dtype == torch.bfloat16 else 2e-3
    scale = want.abs().amax()
    torch.testing.assert_close(pool.eval()(half).double() / scale, want / scale, rtol=tol, atol=tol)


def test_operators_other_than_lip_add_no_state():
    for name in PARAMETER_FREE:
        assert pool_for(name).state_dict() == {}, name


# ---- avg, lp, softpool ---------------------------------------------------------------------------

def test_avg_is_lip_with_zero_initialised_logits():
    x = torch.randn(2, 8, 11, 6)
    lip = DownsampleSpec().single_pool(8)
    torch.testing.assert_close(lip(x), AvgPool()(x), rtol=1e-5, atol=1e-5)


def test_lp_with_p_one_is_average_pooling_on_non_negative_input():
    x = features().abs()
    torch.testing.assert_close(lp_pool2d(x, 1.0), F.avg_pool2d(x, 3, 2, 1, count_include_pad=False))


def test_lp_approaches_max_pooling_as_p_grows():
    x = features(h=15, w=17).abs().detach()
    target = F.max_pool2d(x, 3, 2, 1)
    errors = [(lp_pool2d(x, p) - target).abs().max().item() for p in (2.0, 8.0, 64.0, 512.0)]
    assert errors == sorted(errors, reverse=True) and errors[0] > 0.1
    assert errors[-1] < 0.01 * target.max().item()


def test_lp_with_large_p_and_values_stays_exact_in_float32():
    x = features(scale=1e4)  # |x|^16 ~ 1e64: beyond float32, exact in the float64 formula
    want = lp_formula(16.0)(*slot_windows(x))
    got = lp_pool2d(x.detach().float(), 16.0)
    torch.testing.assert_close(got.double(), want.detach(), rtol=1e-5, atol=0)


def test_lp_of_all_zero_windows_is_zero_with_zero_gradient():
    """Post-ReLU maps are full of zero windows: the power mean's gradient must stay finite."""
    x = features(h=9, w=9).relu().detach()
    x[:, :, :4, :4] = 0
    x.requires_grad_()
    out = LpPool(3.0)(x)
    out.sum().backward()
    assert (out[:, :, :2, :2] == 0).all() and torch.isfinite(x.grad).all()
    assert (x.grad[:, :, :3, :3] == 0).all()


def test_l2_is_lp_with_p_two():
    x = features()
    torch.testing.assert_close(pool_for("l2")(x), pool_for("lp", lp_p=2.0)(x))


def test_softpool_is_lip2d_with_the_features_as_logits():
    x = features(h=9, w=10)
    torch.testing.assert_close(soft_pool2d(x), lip2d(x, x))


def test_softpool_is_exact_where_exp_overflows_float32():
    x = features(scale=200.0)  # exp(|x| <= ~700): inf in float32, finite in float64
    got = soft_pool2d(x.detach().float())
    torch.testing.assert_close(got.double(), formula("softpool", x).detach(), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("kernel,stride,padding", [(3, 2, 1), (2, 2, 0), (3, 1, 1), (5, 3, 2)])
@pytest.mark.parametrize("name", ["max", "min", "avg", "sum", "lp", "softpool", "stochastic"])
def test_window_operators_take_other_windows(name, kernel, stride, padding):
    pool = type(pool_for(name))(kernel=kernel, stride=stride, padding=padding)  # lp: p = 3
    x = features(h=9, w=11)
    want = WINDOW_FORMULAS[name](*slot_windows(x, kernel, stride, padding))
    torch.testing.assert_close(pool.eval()(x), want)


# ---- stochastic pooling --------------------------------------------------------------------------

def test_stochastic_training_samples_in_proportion_to_activation():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).expand(1, 5000, 2, 2)  # one window per channel
    torch.manual_seed(0)
    picked = stochastic_pool2d(x, training=True).flatten()
    frequencies = torch.stack([(picked == v).float().mean() for v in (1.0, 2.0, 3.0, 4.0)])
    torch.testing.assert_close(frequencies, torch.tensor([0.1, 0.2, 0.3, 0.4]), rtol=0, atol=0.03)


def test_stochastic_training_picks_one_positive_activation_per_window():
    x = features(2, 3, 9, 9)
    torch.manual_seed(0)
    out = stochastic_pool2d(x, training=True)
    windows, _ = slot_windows(x.detach())
    hits = (windows == out.detach().unsqueeze(2)) & (windows > 0)
    assert (hits.sum(2) >= 1).all()
    out.sum().backward()  # all of the gradient goes to the picked activation
    assert torch.equal(x.grad.sum(), torch.tensor(float(out.numel()), dtype=x.dtype))
    assert set(x.grad.unique().tolist()) <= {0.0, 1.0, 2.0, 3.0, 4.0}


def test_stochastic_pools_relu_of_signed_input():
    x = torch.randn(2, 3, 9, 8)
    x[0, 0, :3, :3] = -1.0  # a window with no positive activation gives 0
    for training in (True, False):
        torch.manual_seed(0)
        got = stochastic_pool2d(x, training)
        torch.manual_seed(0)
        torch.testing.assert_close(got, stochastic_pool2d(x.relu(), training))
        assert got[0, 0, 0, 0] == 0 and (got >= 0).all()


# ---- S3Pool ----------------------------------------------------------------------------------

@pytest.mark.parametrize("grid", [2, 4, 6])
def test_s3pool_keeps_half_of_every_grid(grid):
    torch.manual_seed(0)
    for size in (1, 2, 3, 5, 8, 13, 16):
        rows = s3pool_sample(size, size, grid).rows
        assert len(rows) == math.ceil(size / 2)
        assert torch.all(rows[1:] > rows[:-1]) and 0 <= rows.min() and rows.max() < size
        for start in range(0, size, grid):
            in_grid = ((rows >= start) & (rows < start + grid)).sum().item()
            assert in_grid == math.ceil(min(grid, size - start) / 2), (size, start)


def test_s3pool_training_keeps_the_sampled_rows_of_the_2x2_max():
    x = features(h=13, w=16)
    sample = s3pool_sample(13, 16, grid=4)
    got = value_and_grad(lambda t: S3Pool(4).train()(t, sample), x)
    want = value_and_grad(lambda t: peak_2x2(t)[:, :, sample.rows][:, :, :, sample.cols], x)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


def test_s3pool_training_follows_the_seed():
    pool, x = S3Pool(4).train(), features(h=32, w=32)
    draws = []
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        draws.append(pool(x))
    assert torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], draws[2])


def test_s3pool_eval_is_regular_subsampling_of_the_stride_one_max():
    x = features(h=13, w=10)
    out = S3Pool(4).eval()(x)
    torch.testing.assert_close(out, peak_2x2(x)[:, :, ::2, ::2])
    torch.testing.assert_close(out, F.max_pool2d(x, 2, 2, ceil_mode=True))


def _pool_calls(block, x):
    """(input, shared, output) of the residual and the shortcut pool in one block forward."""
    calls = {}
    hooks = [getattr(block, name).register_forward_hook(
        lambda module, args, out, name=name: calls.__setitem__(name, (*args, out)))
        for name in ("lip", "shortcut_lip")]
    block(x)
    for hook in hooks:
        hook.remove()
    return calls["lip"], calls["shortcut_lip"]


def test_s3pool_branches_of_a_block_keep_the_same_rows_and_columns():
    spec = DownsampleSpec(pooling="s3pool")
    basic = LIPBasicBlock(8, 16, downsample=spec).train()
    x = torch.rand(2, 8, 21, 18)
    residual, shortcut = _pool_calls(basic, x)
    assert residual[1] is shortcut[1] and residual[1] is not None
    torch.testing.assert_close(residual[2], shortcut[2])  # same input, same rows: same output
    bottleneck = LIPBottleneckBlock(8, 16, bottleneck_channels=4, downsample=spec).train()
    residual, shortcut = _pool_calls(bottleneck, x)
    assert residual[1] is shortcut[1] and len(residual[1].rows) == 11
    residual, shortcut = _pool_calls(bottleneck.eval(), x)
    assert residual[1] is None and shortcut[1] is None


# ---- BlurPool ----------------------------------------------------------------------------------

@pytest.mark.parametrize("size", sorted(BINOMIAL_ROWS))
def test_blur_equals_the_formula_for_each_filter_size(size):
    x = features(h=9, w=12)
    row = torch.tensor(BINOMIAL_ROWS[size], dtype=torch.float32)
    torch.testing.assert_close(binomial_filter(size), torch.outer(row, row) / row.sum() ** 2)
    got = value_and_grad(BlurPool(size), x)
    want = value_and_grad(lambda t: blur_formula(t, size), x)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


def test_blur_output_size_for_every_filter():
    for size in range(2, 8):
        for shape in SIZES:
            x = torch.rand(1, 2, *shape)
            assert BlurPool(size)(x).shape == F.avg_pool2d(x, 3, 2, 1).shape, (size, shape)


# ---- configuration -------------------------------------------------------------------------------

@pytest.mark.parametrize("key,value,allowed", [
    ("MODEL.LIP.POOLING", "mixed", "'lip', 'softpool', 'max'"),
    ("MODEL.LIP.POOLING", "LIP", "'s3pool', 'blur'"),
    ("MODEL.LIP.LP_P", 0.0, "number >= 1"),
    ("MODEL.LIP.LP_P", -2.0, "number >= 1"),
    ("MODEL.LIP.LP_P", 0.5, "number >= 1"),
    ("MODEL.LIP.LP_P", math.inf, "finite number"),
    ("MODEL.LIP.LP_P", True, "number >= 1"),
    ("MODEL.LIP.S3POOL_GRID", 1, "even integer >= 2"),
    ("MODEL.LIP.S3POOL_GRID", 3, "even integer >= 2"),
    ("MODEL.LIP.S3POOL_GRID", 4.0, "even integer >= 2"),
    ("MODEL.LIP.BLUR_FILTER", 1, "integer in 2..7"),
    ("MODEL.LIP.BLUR_FILTER", 8, "integer in 2..7"),
    ("MODEL.LIP.BLUR_FILTER", 3.0, "integer in 2..7"),
])
def test_bad_pooling_values_give_one_line_error_naming_key_and_allowed(key, value, allowed):
    cfg = get_lip_cfg()
    cfg.MODEL.LIP[key.rsplit(".", 1)[1]] = value
    with pytest.raises(LIPConfigError) as err:
        lip_det.validate_lip_config(cfg)
    message = str(err.value)
    assert "\n" not in message and message.startswith(key) and allowed in message


def test_spec_reads_every_pooling_key():
    cfg = get_lip_cfg(opts=["MODEL.LIP.POOLING", "lp", "MODEL.LIP.LP_P", 5.0,
                            "MODEL.LIP.S3POOL_GRID", 8, "MODEL.LIP.BLUR_FILTER", 5])
    spec = DownsampleSpec.from_config(cfg)
    assert (spec.pooling, spec.lp_p, spec.s3pool_grid, spec.blur_filter) == ("lp", 5.0, 8, 5)
    assert spec.single_pool(4).p == 5.0
    assert spec.logit_trunk(16) is None and spec.sampler() is None


def test_module_arguments_are_checked():
    with pytest.raises(ValueError, match="even integer >= 2"):
        S3Pool(3)
    with pytest.raises(ValueError, match="2..7"):
        BlurPool(9)
    with pytest.raises(ValueError, match="no parameter-free module"):
        create_pool(DownsampleSpec())
