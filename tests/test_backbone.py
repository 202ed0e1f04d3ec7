"""LIP-ResNet / FPN backbones: official sizes, strides, names, registration."""
import importlib

import pytest
import torch
import torch.nn.functional as F
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, build_backbone

from lip_det import get_lip_cfg
from lip_det.modeling.backbone import LIPBasicBlock, LIPBottleneckBlock, LIPStem
from lip_lab.utils.memory import SavedTensors
from lip_lab.utils.complexity import backbone_complexity, count_parameters

OFFICIAL_FC_PARAMS = 2048 * 1000 + 1000


def trunk_cfg(depth, name="build_lip_resnet_backbone", *opts):
    return get_lip_cfg(opts=[
        "MODEL.BACKBONE.NAME", name,
        "MODEL.RESNETS.DEPTH", depth,
        "MODEL.RESNETS.RES2_OUT_CHANNELS", 64 if depth < 50 else 256,
        "MODEL.RESNETS.OUT_FEATURES", ["res2", "res3", "res4", "res5"],
        *opts,
    ])


@pytest.mark.parametrize("depth,official_total", [
    (50, 23_864_232), pytest.param(101, 42_856_360, marks=pytest.mark.slow),
])
def test_parameter_count_equals_official(depth, official_total):
    stats = backbone_complexity(trunk_cfg(depth))
    assert stats["params"] == official_total - OFFICIAL_FC_PARAMS


@pytest.mark.slow
def test_lip_r50_flops_above_vanilla():
    lip = backbone_complexity(trunk_cfg(50))["gflops"]
    vanilla = backbone_complexity(trunk_cfg(50, "build_resnet_backbone"))["gflops"]
    assert 1.2 < lip / vanilla < 1.5, (lip, vanilla)


@pytest.mark.parametrize("depth", [18, 50, *(pytest.param(d, marks=pytest.mark.slow) for d in (34, 101))])
def test_strides_channels_and_sizes_match_vanilla(depth):
    lip = build_backbone(trunk_cfg(depth)).eval()
    vanilla = build_backbone(trunk_cfg(depth, "build_resnet_backbone")).eval()
    assert lip.output_shape() == vanilla.output_shape()
    x = torch.randn(1, 3, 67, 93)
    with torch.no_grad():
        got, want = lip(x), vanilla(x)
    assert {k: v.shape for k, v in got.items()} == {k: v.shape for k, v in want.items()}


@pytest.mark.parametrize("depth,block_class", [(18, LIPBasicBlock), (50, LIPBottleneckBlock)])
def test_lip_sits_exactly_where_the_network_downsamples(depth, block_class):
    model = build_backbone(trunk_cfg(depth))
    assert isinstance(model.stem, LIPStem)
    for name in ("res2", "res3", "res4", "res5"):
        blocks = list(getattr(model, name).children())
        lip_blocks = [b for b in blocks if isinstance(b, block_class)]
        assert lip_blocks == ([] if name == "res2" else [blocks[0]])
        assert blocks[0].stride == (1 if name == "res2" else 2)


def test_every_vanilla_weight_name_exists_in_the_lip_backbone():
    lip = build_backbone(trunk_cfg(50)).state_dict()
    vanilla = build_backbone(trunk_cfg(50, "build_resnet_backbone")).state_dict()
    assert set(vanilla) <= set(lip)
    mismatched = sorted(k for k in vanilla if vanilla[k].shape != lip[k].shape)
    # Only the strided 3x3 of each downsampling bottleneck becomes a 1x1 (as in the paper).
    assert mismatched == [f"res{i}.0.conv2.weight" for i in (3, 4, 5)]


def test_basic_block_keeps_every_vanilla_shape():
    lip = build_backbone(trunk_cfg(18)).state_dict()
    vanilla = build_backbone(trunk_cfg(18, "build_resnet_backbone")).state_dict()
    assert all(lip[k].shape == v.shape for k, v in vanilla.items())


def test_zero_initialised_lip_resnet_equals_avg_pooled_vanilla():
    """At init every LIP is 3x3/2 average pooling: the stem equals the vanilla stem with
    its max-pool replaced by avg-pool(count_include_pad=False)."""
    lip = build_backbone(trunk_cfg(50, "build_lip_resnet_backbone", "MODEL.RESNETS.OUT_FEATURES", ["stem"]))
    x = torch.randn(2, 3, 45, 38)
    with torch.no_grad():
        expected = F.avg_pool2d(F.relu(lip.stem.conv1(x)), 3, 2, 1, count_include_pad=False)
        torch.testing.assert_close(lip(x)["stem"], expected)


def test_lip_can_be_limited_to_some_stages():
    model = build_backbone(trunk_cfg(50, "build_lip_resnet_backbone", "MODEL.LIP.STAGES", ["res4"], "MODEL.LIP.STEM", False))
    assert not isinstance(model.stem, LIPStem)
    assert [isinstance(getattr(model, f"res{i}")[0], LIPBottleneckBlock) for i in (3, 4, 5)] == [False, True, False]


def test_projection_logits_have_no_trunk():
    model = build_backbone(trunk_cfg(50, "build_lip_resnet_backbone", "MODEL.LIP.LOGIT_MODULE", "projection"))
    assert model.res3[0].logit_trunk is None
    assert count_parameters(model) != count_parameters(build_backbone(trunk_cfg(50)))


def test_freeze_at_freezes_the_stem_lip():
    model = build_backbone(trunk_cfg(50, "build_lip_resnet_backbone", "MODEL.BACKBONE.FREEZE_AT", 2))
    assert not any(p.requires_grad for p in model.stem.lip.parameters())
    assert all(p.requires_grad for p in model.res3[0].lip.parameters())


@pytest.mark.slow
@pytest.mark.parametrize("builder,top_levels", [
    ("build_lip_resnet_fpn_backbone", ["p6"]),
    ("build_retinanet_lip_resnet_fpn_backbone", ["p6", "p7"]),
])
def test_fpn_top_block_can_use_lip(builder, top_levels):
    features = ["res2", "res3", "res4", "res5"] if "retinanet" not in builder else ["res3", "res4", "res5"]
    outputs = {}
    for with_lip in (False, True):
        cfg = trunk_cfg(50, builder, "MODEL.FPN.IN_FEATURES", features, "MODEL.RESNETS.OUT_FEATURES", features,
                        "MODEL.LIP.FPN_TOP_BLOCK", with_lip)
        model = build_backbone(cfg).eval()
        has_lip_top = any(name.endswith("_lip") for name, _ in model.top_block.named_children())
        assert has_lip_top == with_lip
        with torch.no_grad():
            outputs[with_lip] = {k: v.shape for k, v in model(torch.randn(1, 3, 96, 128)).items()}
    assert outputs[True] == outputs[False]
    assert all(level in outputs[True] for level in top_levels)


def test_registration_is_idempotent_under_reload():
    import lip_det.modeling.backbone.fpn as fpn
    import lip_det.modeling.backbone.lip_resnet as lip_resnet

    before = BACKBONE_REGISTRY.get("build_lip_resnet_backbone")
    importlib.reload(lip_resnet)
    importlib.reload(fpn)
    assert BACKBONE_REGISTRY.get("build_lip_resnet_backbone") is before
    for name in ("build_lip_resnet_fpn_backbone", "build_retinanet_lip_resnet_fpn_backbone"):
        assert name in BACKBONE_REGISTRY


def test_registering_a_foreign_builder_of_the_same_name_raises():
    from lip_det.modeling.backbone.registry import register_backbone

    def build_lip_resnet_backbone(cfg, input_shape):  # same name, other module
        raise AssertionError

    build_lip_resnet_backbone.__module__ = "someone_else"
    with pytest.raises(KeyError, match="already has 'build_lip_resnet_backbone'"):
        register_backbone(build_lip_resnet_backbone)


def test_stem_input_channels_follow_input_shape():
    from lip_det.modeling.backbone import build_lip_resnet_backbone

    model = build_lip_resnet_backbone(trunk_cfg(50), ShapeSpec(channels=1))
    assert model.stem.conv1.weight.shape[1] == 1


@pytest.mark.slow
def test_recomputed_logits_give_the_same_gradients_with_less_memory():
    # float64: the two paths are the same math in another order; in float32 this 50-layer random network
    # amplifies their rounding differences to ~1e-5 of a gradient's scale, in float64 to ~1e-14.
    x = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    grads, saved = {}, {}
    for recompute in (False, True):
        torch.manual_seed(0)
        model = build_backbone(trunk_cfg(50, "build_lip_resnet_backbone", "MODEL.BACKBONE.FREEZE_AT", 0,
                                         "MODEL.LIP.RECOMPUTE_LOGITS", recompute)).train().double()
        for module in model.modules():  # non-trivial logits
            if module.__class__.__name__ == "ConvLogit":
                torch.nn.init.normal_(module.conv.weight, std=0.1)
        recorder = SavedTensors()
        with recorder.recording():
            loss = sum(v.square().mean() for v in model(x).values())
        loss.backward()
        saved[recompute] = recorder.total
        grads[recompute] = {n: p.grad for n, p in model.named_parameters()}
    for name, grad in grads[False].items():  # float64 rounding only: 1e-10 of each gradient's scale
        torch.testing.assert_close(grads[True][name], grad, rtol=1e-10, atol=1e-10 * grad.abs().max().item(), msg=name)
    assert saved[True] < 0.9 * saved[False]


@pytest.mark.parametrize("pooling", ["lip", "s3pool", "spd", "haar"])
def test_slot_names_are_the_keys_saved_checkpoints_hold(pooling):
    """Checkpoints saved so far and the official-weight tables name the LIP slots stem.lip, resN.0.lip,
    resN.0.shortcut_lip, resN.0.logit_trunk and p6_lip / p7_lip, whichever operator sits there."""
    cfg = trunk_cfg(50, "build_retinanet_lip_resnet_fpn_backbone", "MODEL.LIP.FPN_TOP_BLOCK", True,
                    "MODEL.LIP.POOLING", pooling, "MODEL.FPN.IN_FEATURES", ["res3", "res4", "res5"])
    modules = dict(build_backbone(cfg).named_modules())
    slots = ["bottom_up.stem.lip", "bottom_up.res3.0.lip", "bottom_up.res5.0.shortcut_lip", "top_block.p6_lip",
             "top_block.p7_lip"] + (["bottom_up.res4.0.logit_trunk"] if pooling == "lip" else [])
    assert all(slot in modules for slot in slots), [slot for slot in slots if slot not in modules]
