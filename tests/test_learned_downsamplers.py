"""SPD-Conv and Haar wavelet downsampling (``MODEL.LIP.POOLING`` spd / haar), each against a
formula written here from explicit 2x2 slices, and at every slot of a built detector."""
import copy

import pytest
import torch
import torch.nn.functional as F
from detectron2.layers import FrozenBatchNorm2d
from detectron2.modeling import build_backbone

import lip_det
from lip_det import LIPConfigError, get_lip_cfg
from lip_det.layers import LEARNED_OPERATORS, POOLINGS, DownsampleSpec, HaarDownsample

from helpers import load_tool, repo_cfg

SIZES = [(1, 1), (1, 4), (2, 2), (5, 5), (6, 9), (8, 8)]
NORMS = ["BN", "", None]  # a backbone slot with BatchNorm, one without a norm, an FPN top level


def zero_padded_blocks(x):
    """a, b, c, d: top-left, top-right, bottom-left, bottom-right of each 2x2 block of ``x`` placed in
    a zero map of even size (a zero row / column at the bottom / right when H / W is odd)."""
    n, c, h, w = x.shape
    padded = x.new_zeros(n, c, h + h % 2, w + w % 2)
    padded[:, :, :h, :w] = x
    return padded[:, :, 0::2, 0::2], padded[:, :, 0::2, 1::2], padded[:, :, 1::2, 0::2], padded[:, :, 1::2, 1::2]


def spd_input(x):
    """Channel 4c + 2i + j of the space-to-depth map: phase (i, j) of channel c."""
    a, b, c, d = zero_padded_blocks(x)
    return torch.stack([a, b, c, d], 2).flatten(1, 2)


def haar_input(x):
    """The orthonormal Haar sub-bands [LL | LH | HL | HH], band after band."""
    a, b, c, d = zero_padded_blocks(x)
    return torch.cat([(a + b + c + d) / 2, (a + b - c - d) / 2, (a - b + c - d) / 2, (a - b - c + d) / 2], 1)


FORMULA_INPUTS = {"spd": spd_input, "haar": haar_input}
KERNEL_SIZES = {"spd": 3, "haar": 1}


def formula(name, module, x, norm):
    """The conv 4C -> C with ``module``'s weights, then eval-mode BatchNorm and ReLU in the backbone."""
    conv = module.conv
    y = F.conv2d(FORMULA_INPUTS[name](x), conv.weight, conv.bias, padding=KERNEL_SIZES[name] // 2)
    if norm == "BN":
        bn = conv.norm
        scale = bn.weight / (bn.running_var + bn.eps).sqrt()
        y = (y - bn.running_mean.view(-1, 1, 1)) * scale.view(-1, 1, 1) + bn.bias.view(-1, 1, 1)
    return y if norm is None else y.relu()


def slot_module(name, channels=3, norm=None, dtype=torch.float64, seed=0):
    """The operator as a slot builds it, eval mode, with random BatchNorm statistics and affine."""
    torch.manual_seed(seed)
    module = DownsampleSpec(pooling=name).single_pool(channels, norm).to(dtype).eval()
    if norm == "BN":
        bn = module.conv.norm
        for tensor in (bn.weight, bn.bias, bn.running_mean):
            tensor.data.uniform_(-0.5, 0.5)
        bn.running_var.data.uniform_(0.5, 2.0)
    return module


def features(n=2, c=3, h=5, w=6, dtype=torch.float64, seed=1):
    return torch.randn(n, c, h, w, dtype=dtype, generator=torch.Generator().manual_seed(seed))


# ---- the transforms --------------------------------------------------------------------------

def test_space_to_depth_is_pixel_unshuffle_on_even_maps():
    x = features(h=6, w=8)
    torch.testing.assert_close(spd_input(x), F.pixel_unshuffle(x, 2), rtol=0, atol=0)


@pytest.mark.parametrize("size", SIZES)
def test_haar_sub_bands_are_orthonormal(size):
    """Parseval: the four sub-bands hold the energy of the (zero-padded) input, no more, no less."""
    x = features(h=size[0], w=size[1])
    bands = haar_input(x)
    torch.testing.assert_close(bands.square().sum((1, 2, 3)), x.square().sum((1, 2, 3)))
    module = slot_module("haar")
    torch.testing.assert_close(module.transform(x), bands)


# ---- each operator ---------------------------------------------------------------------------

@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("name", LEARNED_OPERATORS)
def test_value_and_gradient_equal_the_formula_for_every_size(name, norm):
    module = slot_module(name, norm=norm)
    for size in SIZES:
        x = features(h=size[0], w=size[1]).requires_grad_()
        got, want = module(x), formula(name, module, x, norm)
        assert got.shape == F.avg_pool2d(x, 3, 2, 1).shape, size
        torch.testing.assert_close(got, want, msg=str(size))
        weights = torch.linspace(-1, 1, got.numel(), dtype=got.dtype).view_as(got)
        grad_got = torch.autograd.grad((got * weights).sum(), (x, module.conv.weight))
        grad_want = torch.autograd.grad((want * weights).sum(), (x, module.conv.weight))
        for g, w in zip(grad_got, grad_want):
            torch.testing.assert_close(g, w, msg=str(size))


@pytest.mark.parametrize("size", [(1, 1), (5, 6)])
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("name", LEARNED_OPERATORS)
def test_gradcheck_in_float64(name, norm, size):
    module = slot_module(name, channels=2, norm=norm)
    x = features(1, 2, *size).requires_grad_()
    weight = module.conv.weight.detach().clone().requires_grad_()

    def run(inp, w):
        return torch.func.functional_call(module, {"conv.weight": w}, (inp,))

    assert torch.autograd.gradcheck(run, (x, weight))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", LEARNED_OPERATORS)
def test_half_precision_training_is_finite_and_close_to_float64(name, dtype):
    """CPU runs both half types natively (conv, BatchNorm and their backward)."""
    reference = slot_module(name, channels=8, norm="BN").train()
    half = copy.deepcopy(reference).to(dtype)
    x = 4 * features(2, 8, 13, 11)
    want = reference(x)
    inp = x.to(dtype).requires_grad_()
    out = half(inp)
    assert out.dtype == dtype and torch.isfinite(out).all()
    out.float().square().mean().backward()
    assert torch.isfinite(inp.grad).all() and torch.isfinite(half.conv.weight.grad).all()
    tol = 5e-2 if dtype == torch.bfloat16 else 5e-3
    torch.testing.assert_close(out.double(), want.detach(), rtol=tol, atol=tol)


@pytest.mark.parametrize("name", LEARNED_OPERATORS)
def test_compiles_in_one_graph_with_eager_values(name):
    module = slot_module(name, channels=4, norm="BN", dtype=torch.float32).train()
    compiled = torch.compile(copy.deepcopy(module), backend="aot_eager", fullgraph=True)  # raises on a graph break
    for size in [(8, 8), (7, 5), (1, 1)]:
        x = features(2, 4, *size, dtype=torch.float32)
        eager_x, compiled_x = x.clone().requires_grad_(), x.clone().requires_grad_()
        eager, got = module(eager_x), compiled(compiled_x)
        torch.testing.assert_close(got, eager, msg=str(size))
        got.sum().backward()
        eager.sum().backward()
        torch.testing.assert_close(compiled_x.grad, eager_x.grad, msg=str(size))
    explanation = torch._dynamo.explain(module)(features(2, 4, 7, 5, dtype=torch.float32))
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1


# ---- at the slots of a detector ---------------------------------------------------------------

SLOTS = {  # the quick config (R18, BN) with FPN_TOP_BLOCK: slot -> its channel count
    "bottom_up.stem.lip": 64,
    "bottom_up.res3.0.lip": 64, "bottom_up.res3.0.shortcut_lip": 64,
    "bottom_up.res4.0.lip": 128, "bottom_up.res4.0.shortcut_lip": 128,
    "bottom_up.res5.0.lip": 256, "bottom_up.res5.0.shortcut_lip": 256,
    "top_block.p6_lip": 64,
}


@pytest.mark.parametrize("name", LEARNED_OPERATORS)
def test_every_slot_maps_4c_to_c_with_its_neighbours_norm(name):
    cfg = repo_cfg("quick/faster_rcnn_lip_r18_shapes.yaml", "MODEL.LIP.POOLING", name, "MODEL.LIP.FPN_TOP_BLOCK", True)
    modules = dict(build_backbone(cfg).named_modules())
    for slot, channels in SLOTS.items():
        conv = modules[slot].conv
        assert type(modules[slot]) is LEARNED_OPERATORS[name], slot
        assert (conv.in_channels, conv.out_channels) == (4 * channels, channels), slot
        assert conv.kernel_size == (KERNEL_SIZES[name],) * 2 and conv.stride == (1, 1), slot
        in_backbone = slot.startswith("bottom_up")
        assert isinstance(conv.norm, torch.nn.BatchNorm2d) == in_backbone, slot  # quick config: NORM "BN"
        assert (conv.activation is F.relu) == in_backbone and (conv.bias is None) == in_backbone, slot


def test_complexity_tool_counts_what_each_slot_adds():
    """ResNet-18 slots (C: stem 64, res3 64 / 64, res4 128 / 128, res5 256 / 256): a k x k conv 4C -> C
    and a BatchNorm (the tool counts BN as parameters) per slot, over the parameter-free trunk."""
    tool = load_tool("model_complexity")
    slot_channels = [64, 64, 64, 128, 128, 256, 256]
    parameter_free = tool.trunk_complexity("resnet", 18, 64, pooling="max")
    for name, kernel in KERNEL_SIZES.items():
        row = tool.trunk_complexity("resnet", 18, 64, pooling=name)
        assert row["params"] - parameter_free["params"] == sum(4 * c * c * kernel**2 + 2 * c for c in slot_channels)
        assert row["gflops"] > parameter_free["gflops"]


def test_frozen_bn_backbones_get_frozen_bn_at_the_slots():
    cfg = repo_cfg("faster_rcnn_lip_r50.yaml", "MODEL.LIP.POOLING", "haar",
                   "MODEL.RESNETS.DEPTH", 18, "MODEL.RESNETS.RES2_OUT_CHANNELS", 64)
    trunk = build_backbone(cfg).bottom_up
    assert isinstance(trunk.res4[0].shortcut_lip.conv.norm, FrozenBatchNorm2d)
    assert isinstance(trunk.stem.lip, HaarDownsample) and isinstance(trunk.stem.lip.conv.norm, FrozenBatchNorm2d)


# ---- configuration ---------------------------------------------------------------------------

def test_unknown_operator_names_the_learned_ones_among_the_allowed():
    cfg = get_lip_cfg()
    cfg.MODEL.LIP.POOLING = "hwd"
    with pytest.raises(LIPConfigError) as err:
        lip_det.validate_lip_config(cfg)
    message = str(err.value)
    assert message.startswith("MODEL.LIP.POOLING = 'hwd' is not valid; ") and "\n" not in message
    assert "'spd'" in message and "'haar'" in message and set(LEARNED_OPERATORS) <= set(POOLINGS)


@pytest.mark.parametrize("channels,norm", [(48, "GN"), (0, "BN"), (-4, "")])
@pytest.mark.parametrize("name", LEARNED_OPERATORS)
def test_a_channel_count_the_slot_cannot_take_gives_a_one_line_error(name, channels, norm):
    spec = DownsampleSpec.from_config(get_lip_cfg(opts=["MODEL.LIP.POOLING", name]))
    with pytest.raises(LIPConfigError) as err:
        spec.branch_pool(channels, norm)
    message = str(err.value)
    assert message.startswith(f"MODEL.LIP.POOLING = {name!r} cannot take a slot of {channels} channels")
    assert "\n" not in message and "allowed values for this slot: 'lip', 'softpool'" in message
    assert "'spd'" not in message.split("allowed values")[1]
    assert spec.branch_pool(64, norm) is not None  # the same spec takes a slot it can
