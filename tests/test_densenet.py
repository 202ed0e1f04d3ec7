"""LIP-DenseNet-121 and its DenseNet-121 twin: official sizes, exact weights, where LIP sits, detectors."""
import math
import pickle
import re

import pytest
import torch
import torchvision
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg, instantiate
from detectron2.layers import FrozenBatchNorm2d, ShapeSpec
from detectron2.modeling import build_backbone, build_model
from detectron2.modeling.backbone.resnet import BasicStem
from detectron2.utils.events import EventStorage
from torch import nn

from helpers import CONFIGS, detection_batch, load_tool, repo_cfg
from lip_det import LIPConfigError, get_lip_cfg
from lip_det.layers import LIP, POOLINGS, AvgPool, ConvLogit
from lip_det.modeling.backbone import LIPStem, build_densenet_backbone, build_lip_densenet_backbone
from lip_lab.checkpoint import CheckpointError, LIPCheckpointer, convert_to_d2
from lip_lab.cli import load_lazy_config
from lip_lab.demo import ImportanceRecorder
from lip_lab.engine import check_lazy_lip_options
from lip_lab.utils.complexity import count_parameters
from official_lip_densenet_reference import OfficialLIPDenseNet, densenet_stage_outputs
from official_lip_resnet_reference import randomize_

STAGES = ["res2", "res3", "res4", "res5"]
OFFICIAL_LIP_DENSENET121_PARAMS = 8_690_920
"""Parameters of the official ``densenet121()`` of imagenet/lip_densenet.py with its 1000-way classifier
(its README: 8.7M)."""


def trunk(builder=build_lip_densenet_backbone, *opts):
    cfg = get_lip_cfg(opts=["MODEL.DENSENET.OUT_FEATURES", STAGES, *opts])
    return builder(cfg, ShapeSpec(channels=3))


def trainable(builder, depth=121):
    """Every stage trainable, BN weights as parameters: the network ImageNet training counts."""
    return trunk(builder, "MODEL.DENSENET.DEPTH", depth, "MODEL.DENSENET.NORM", "BN", "MODEL.BACKBONE.FREEZE_AT", 0)


def relative_error(got, want):
    """max |got - want| / max |want|."""
    return ((got - want).abs().max() / want.abs().max()).item()


def assert_stage_outputs(model, network, x):
    """``model``'s res2..res5 equal the stage outputs of ``network`` (an official or torchvision DenseNet)."""
    with torch.no_grad():
        got, want = model.eval()(x), densenet_stage_outputs(network.features, x)
    for name, ref in zip(STAGES, want):
        assert got[name].shape == ref.shape, name
        assert relative_error(got[name], ref) <= 1e-5, name


def read_pkl(path):
    with open(path, "rb") as f:
        return pickle.load(f)


@pytest.fixture(scope="module")
def official():
    """A randomised LIP-DenseNet-121 in the official layout."""
    return randomize_(OfficialLIPDenseNet()).eval()


@pytest.fixture(scope="module")
def official_file(official, tmp_path_factory):
    path = tmp_path_factory.mktemp("official") / "lip_densenet_121.pth"
    torch.save(official.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def converted(official_file, tmp_path_factory):
    return convert_to_d2(official_file, tmp_path_factory.mktemp("d2") / "lip_densenet121_d2.pkl")


@pytest.fixture(scope="module")
def torchvision_file(tmp_path_factory):
    """A randomised torchvision DenseNet-121 and its checkpoint file."""
    model = randomize_(torchvision.models.densenet121(weights=None), seed=3).eval()
    path = tmp_path_factory.mktemp("tv") / "densenet121.pth"
    torch.save(model.state_dict(), path)
    return model, path


def test_lip_densenet121_has_the_official_parameter_count():
    reference = OfficialLIPDenseNet()
    assert count_parameters(reference) == OFFICIAL_LIP_DENSENET121_PARAMS
    lip = trainable(build_lip_densenet_backbone)
    assert count_parameters(lip) + count_parameters(reference.classifier) == OFFICIAL_LIP_DENSENET121_PARAMS


@pytest.mark.parametrize("depth", [121, *(pytest.param(d, marks=pytest.mark.slow) for d in (161, 169, 201))])
def test_vanilla_trunk_has_the_parameters_of_torchvision_densenet_features(depth):
    network = getattr(torchvision.models, f"densenet{depth}")(weights=None)
    assert count_parameters(trainable(build_densenet_backbone, depth)) == count_parameters(network.features)


def test_outputs_have_resnet_names_and_strides_and_densenet_channels():
    features = torchvision.models.densenet121(weights=None).features
    # each stage ends with the norm of the transition after it (res5: norm5)
    channels = [features.transition1.norm.num_features, features.transition2.norm.num_features,
                features.transition3.norm.num_features, features.norm5.num_features]
    expected = {name: (c, 2 ** (i + 2)) for i, (name, c) in enumerate(zip(STAGES, channels))}
    x = torch.randn(1, 3, 64, 96)
    for model in (trunk(), trunk(build_densenet_backbone)):
        assert {k: (v.channels, v.stride) for k, v in model.output_shape().items()} == expected
        with torch.no_grad():
            outputs = model.eval()(x)
        assert {k: tuple(v.shape) for k, v in outputs.items()} == {
            name: (1, c, 64 // stride, 96 // stride) for name, (c, stride) in expected.items()
        }


def test_lip_sits_where_densenet_pools():
    lip, vanilla = trunk(), trunk(build_densenet_backbone)
    assert isinstance(lip.stem, LIPStem) and type(vanilla.stem) is BasicStem
    for name in ("res3", "res4", "res5"):
        lip_transition, vanilla_transition = getattr(lip, name)[0], getattr(vanilla, name)[0]
        assert lip_transition.stride == vanilla_transition.stride == 2
        assert (lip_transition.lip.kernel, lip_transition.lip.stride, lip_transition.lip.padding) == (2, 2, 0)
        assert isinstance(vanilla_transition.lip, AvgPool) and vanilla_transition.lip.window == (2, 2, 0)
    assert [n for n, m in lip.named_modules() if isinstance(m, LIP)] == ["stem.lip", "res3.0.lip", "res4.0.lip",
                                                                         "res5.0.lip"]
    assert not any(isinstance(m, LIP) for m in vanilla.modules())


def test_without_lip_slots_it_is_the_vanilla_twin():
    off = trunk(build_lip_densenet_backbone, "MODEL.LIP.STEM", False, "MODEL.LIP.STAGES", [])
    vanilla = trunk(build_densenet_backbone)
    assert {k: v.shape for k, v in off.state_dict().items()} == {k: v.shape for k, v in vanilla.state_dict().items()}
    assert [type(m) for m in off.modules()] == [type(m) for m in vanilla.modules()]


@pytest.fixture(scope="module")
def vanilla_shapes():
    with torch.no_grad():
        return {k: v.shape for k, v in trunk(build_densenet_backbone).eval()(torch.randn(1, 3, 64, 96)).items()}


@pytest.mark.parametrize("pooling", POOLINGS)
def test_every_pooling_operator_fits_the_stem_and_the_transitions(pooling, vanilla_shapes):
    model = trunk(build_lip_densenet_backbone, "MODEL.LIP.POOLING", pooling).eval()
    with torch.no_grad():
        outputs = model(torch.randn(1, 3, 64, 96))
    assert {k: v.shape for k, v in outputs.items()} == vanilla_shapes
    assert all(torch.isfinite(v).all() for v in outputs.values())


def test_freeze_at_freezes_the_stem_lip_and_dense_block_1():
    model = trunk(build_lip_densenet_backbone, "MODEL.DENSENET.NORM", "BN", "MODEL.BACKBONE.FREEZE_AT", 2)
    assert not any(p.requires_grad for p in [*model.stem.parameters(), *model.res2.parameters()])
    assert all(p.requires_grad for p in model.res3.parameters()) and model.res3[0].lip.logit.conv.weight.requires_grad
    assert isinstance(model.res2[-1].norm, FrozenBatchNorm2d) and type(model.res3[-1].norm) is nn.BatchNorm2d


@pytest.mark.parametrize("key,value,allowed", [
    ("DEPTH", 122, "allowed values: 121, 161, 169, 201"),
    ("NORM", "", "use e.g. 'FrozenBN'"),
    ("OUT_FEATURES", ["dense1"], "use names among 'stem', 'res2'"),
])
def test_bad_densenet_values_give_one_line_naming_the_key(key, value, allowed):
    cfg = get_lip_cfg()
    cfg.MODEL.DENSENET[key] = value
    for builder in (build_densenet_backbone, build_lip_densenet_backbone):
        with pytest.raises(LIPConfigError) as err:
            builder(cfg, ShapeSpec(channels=3))
        message = str(err.value)
        assert message.startswith(f"MODEL.DENSENET.{key} = {value!r} is not valid; ") and allowed in message
        assert "\n" not in message


def test_missing_densenet_config_is_explained():
    with pytest.raises(LIPConfigError, match="MODEL.DENSENET is missing; call lip_det.add_lip_config"):
        build_densenet_backbone(get_cfg(), ShapeSpec(channels=3))


@pytest.mark.parametrize("builder,features,levels,lip_top", [
    ("build_lip_densenet_fpn_backbone", STAGES, ["p2", "p3", "p4", "p5", "p6"], ["p6_lip"]),
    ("build_densenet_fpn_backbone", STAGES, ["p2", "p3", "p4", "p5", "p6"], []),
    ("build_retinanet_lip_densenet_fpn_backbone", STAGES[1:], ["p3", "p4", "p5", "p6", "p7"], ["p6_lip", "p7_lip"]),
    ("build_retinanet_densenet_fpn_backbone", STAGES[1:], ["p3", "p4", "p5", "p6", "p7"], []),
])
def test_fpn_builders_give_the_pyramid_and_lip_top_levels_only_with_lip(builder, features, levels, lip_top):
    cfg = get_lip_cfg(opts=["MODEL.BACKBONE.NAME", builder, "MODEL.DENSENET.OUT_FEATURES", features,
                            "MODEL.FPN.IN_FEATURES", features, "MODEL.LIP.FPN_TOP_BLOCK", True])
    model = build_backbone(cfg).eval()
    assert [name for name, _ in model.top_block.named_children() if name.endswith("_lip")] == lip_top
    with torch.no_grad():
        outputs = model(torch.randn(1, 3, 64, 96))
    strides = {name: 2 ** int(name[1]) for name in levels}
    assert {k: tuple(v.shape[-2:]) for k, v in outputs.items()} == {
        name: (math.ceil(64 / s), math.ceil(96 / s)) for name, s in strides.items()
    }


def test_every_official_tensor_maps_to_exactly_one_trunk_weight(official, converted):
    official_keys = official.state_dict().keys()
    dropped = [k for k in official_keys if k.startswith("classifier.") or k.endswith("num_batches_tracked")]
    assert sorted(converted.dropped) == sorted(dropped)
    data = read_pkl(converted.output)
    assert len(data["model"]) == converted.num_tensors == len(official_keys) - len(dropped)
    assert set(data["model"]) == set(trunk().state_dict())  # nothing missing, nothing unexpected
    assert converted.model == "LIP-DenseNet-121" and data["matching_heuristics"] is True


@pytest.mark.parametrize("norm", ["FrozenBN", pytest.param("BN", marks=pytest.mark.slow)])
def test_converted_official_weights_give_the_official_features(official, converted, norm):
    model = trunk(build_lip_densenet_backbone, "MODEL.DENSENET.NORM", norm)
    checkpointer = LIPCheckpointer(model)
    checkpointer.load(converted.output)
    assert checkpointer.trunk_load.new == [] and len(checkpointer.trunk_load.state_dict) == converted.num_tensors
    # odd sizes: the stem's 3x3/2 windows round up, the transitions' 2x2/2 windows down
    assert_stage_outputs(model, official, torch.randn(2, 3, 67, 91, generator=torch.Generator().manual_seed(1)))


@pytest.mark.parametrize("depth", [121, pytest.param(161, marks=pytest.mark.slow)])
def test_converted_torchvision_weights_give_torchvision_features(depth, tmp_path):
    network = randomize_(getattr(torchvision.models, f"densenet{depth}")(weights=None), seed=depth).eval()
    torch.save(network.state_dict(), tmp_path / "tv.pth")
    result = convert_to_d2(tmp_path / "tv.pth", tmp_path / "tv_d2.pkl")
    assert result.model == f"DenseNet-{depth}"
    model = trunk(build_densenet_backbone, "MODEL.DENSENET.DEPTH", depth)
    checkpointer = LIPCheckpointer(model)
    checkpointer.load(result.output)
    assert checkpointer.trunk_load.new == [] and len(checkpointer.trunk_load.state_dict) == len(model.state_dict())
    assert_stage_outputs(model, network, torch.randn(2, 3, 75, 61, generator=torch.Generator().manual_seed(0)))


def test_torchvision_files_with_the_older_dotted_layer_names_convert_the_same(torchvision_file, tmp_path):
    """torchvision's released DenseNet files name a dense layer's modules ``norm.1``, ``conv.1``, ``norm.2``,
    ``conv.2``."""
    model, path = torchvision_file
    dotted = {re.sub(r"(denselayer\d+\.(?:norm|conv))([12])\.", r"\1.\2.", k): v for k, v in model.state_dict().items()}
    assert "features.denseblock1.denselayer1.norm.1.weight" in dotted
    torch.save(dotted, tmp_path / "dotted.pth")
    got = read_pkl(convert_to_d2(tmp_path / "dotted.pth", tmp_path / "dotted.pkl").output)["model"]
    want = read_pkl(convert_to_d2(path, tmp_path / "plain.pkl").output)["model"]
    assert got.keys() == want.keys() and all((got[k] == want[k]).all() for k in want)


def lip_module_keys(model):
    return {k for k in model.state_dict() if re.match(r"(stem|res\d\.0)\.(lip|logit_trunk)\.", k)}


def test_torchvision_weights_warm_start_lip_densenet_with_exactly_the_lip_modules_new(torchvision_file):
    _, path = torchvision_file
    model = trunk()
    checkpointer = LIPCheckpointer(model)
    checkpointer.load(str(path))
    load = checkpointer.trunk_load
    assert set(load.new) == lip_module_keys(model) and len(load.new) == 3 + 3 * (6 + 3)
    assert set(load.state_dict) | set(load.new) == set(model.state_dict())
    assert "new (LIP starts as average pooling): res3.0.lip.logit.conv" in load.summary()


def test_zero_initialised_transition_lip_is_average_pooling(torchvision_file):
    """With the stem's max-pool kept and torchvision's weights, LIP-DenseNet at init gives torchvision's features:
    each transition LIP weighs its 2x2 windows evenly."""
    network, path = torchvision_file
    model = trunk(build_lip_densenet_backbone, "MODEL.LIP.STEM", False)
    LIPCheckpointer(model).load(str(path))
    assert_stage_outputs(model, network, torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(2)))


def test_weights_of_another_depth_give_one_clear_line(tmp_path):
    torch.save(torchvision.models.densenet169(weights=None).state_dict(), tmp_path / "d169.pth")
    with pytest.raises(CheckpointError, match=r"torchvision DenseNet, DenseNet-169\) do not fit this model") as err:
        LIPCheckpointer(trunk()).load(str(tmp_path / "d169.pth"))
    assert "\n" not in str(err.value) and "MODEL.DENSENET.DEPTH" in str(err.value)


@pytest.mark.parametrize("key,trunk_name", [
    ("features.transition2.pool.logit.bn3.bias", "res4.0.lip.logit.norm.bias"),
    ("features.norm5.running_var", "res5.17.norm.running_var"),
])
def test_missing_tensor_is_named_in_a_one_line_error(official, tmp_path, key, trunk_name):
    torch.save({k: v for k, v in official.state_dict().items() if k != key}, tmp_path / "partial.pth")
    with pytest.raises(CheckpointError) as err:
        convert_to_d2(tmp_path / "partial.pth", tmp_path / "out.pkl")
    assert "\n" not in str(err.value) and trunk_name in str(err.value)
    assert not (tmp_path / "out.pkl").exists()


def test_tool_names_the_model_and_the_settings_its_weights_need(official_file, tmp_path, capsys):
    assert load_tool("convert_to_d2").main([str(official_file), str(tmp_path / "w.pkl")]) == 0
    out = capsys.readouterr().out
    assert "tensors of LIP-DenseNet-121 (official LIP-DenseNet" in out and "MODEL.DENSENET.DEPTH: 121" in out
    assert "INPUT.FORMAT: RGB" in out and "123.675" in out and "58.395" in out and "STRIDE_IN_1X1" not in out


def test_converted_file_fills_the_faster_rcnn_trunk_with_either_checkpointer(converted):
    weights = {k: torch.as_tensor(v) for k, v in read_pkl(converted.output)["model"].items()}
    for loader in (LIPCheckpointer, DetectionCheckpointer):
        model = build_model(repo_cfg("faster_rcnn_lip_densenet121.yaml"))
        loader(model).load(converted.output)
        bottom_up = {k[len("backbone.bottom_up."):]: v for k, v in model.state_dict().items()
                     if k.startswith("backbone.bottom_up.")}
        assert bottom_up.keys() == weights.keys(), loader
        assert all(torch.equal(bottom_up[k], weights[k]) for k in weights), loader


@pytest.mark.parametrize("name", ["faster_rcnn_lip_densenet121.yaml", "faster_rcnn_densenet121.yaml"])
def test_faster_rcnn_trains_one_step(name):
    cfg = repo_cfg(name, "MODEL.BACKBONE.FREEZE_AT", 0)
    model = build_model(cfg).train()
    with EventStorage(0):
        losses = model(detection_batch(num_images=1))
    assert all(math.isfinite(v.item()) for v in losses.values()), losses
    sum(losses.values()).backward()
    bottom_up = model.backbone.bottom_up
    convs = [bottom_up.stem.conv1.weight, bottom_up.res3[0].conv.weight, bottom_up.res5[1].conv2.weight]
    if "lip" in name:  # LIP's heads start at zero and get a gradient from the first step
        convs += [bottom_up.stem.lip.logit.conv.weight, bottom_up.res4[0].lip.logit.conv.weight]
    assert all(w.grad is not None and w.grad.abs().sum() > 0 for w in convs)


@pytest.mark.parametrize("lazy_name,yaml_name", [
    ("lazy/faster_rcnn_lip_densenet121.py", "faster_rcnn_lip_densenet121.yaml"),
    ("lazy/retinanet_densenet121.py", "retinanet_densenet121.yaml"),
])
def test_lazy_config_builds_the_backbone_of_its_yaml_twin(lazy_name, yaml_name):
    lazy = instantiate(load_lazy_config(str(CONFIGS / lazy_name)).model.backbone)
    yaml = build_backbone(repo_cfg(yaml_name))
    assert {k: v.shape for k, v in lazy.state_dict().items()} == {k: v.shape for k, v in yaml.state_dict().items()}
    assert [type(m).__name__ for m in lazy.modules()] == [type(m).__name__ for m in yaml.modules()]


@pytest.mark.parametrize("key,value,message", [
    ("poolng", "max", "stages.poolng is not an argument of make_lip_densenet_stages (did you mean pooling?)"),
    ("pooling", "median", "stages.pooling = 'median' is not valid; allowed values: 'lip'"),
    ("lip_stages", ["res2"], "stages.lip_stages = ['res2'] is not valid; use distinct names among 'res3'"),
])
def test_lip_keywords_of_the_lazy_densenet_stages_are_checked_before_launch(key, value, message):
    cfg = load_lazy_config(str(CONFIGS / "lazy/faster_rcnn_lip_densenet121.py"))
    cfg.model.backbone.bottom_up.stages[key] = value
    with pytest.raises(LIPConfigError) as err:
        check_lazy_lip_options(cfg)
    assert str(err.value).startswith("model.backbone.bottom_up." + message)


def test_importance_maps_cover_the_stem_and_every_transition():
    """With the official InstanceNorm logits on the CPU (where LIP blocks train through the memory-lean node)."""
    torch.manual_seed(0)
    model = build_model(repo_cfg("faster_rcnn_lip_densenet121.yaml")).eval()
    for module in model.modules():
        if isinstance(module, ConvLogit):
            torch.nn.init.normal_(module.conv.weight, std=0.5)
    with ImportanceRecorder(model) as recorder, torch.no_grad():
        model([{"image": torch.rand(3, 96, 128) * 255}])
    assert list(recorder.maps) == ["stem", "res3", "res4", "res5"]
    for title, stride in [("stem", 2), ("res3", 4), ("res4", 8), ("res5", 16)]:  # each pool's input
        assert recorder.maps[title].shape == (96 // stride, 128 // stride)
        assert recorder.maps[title].std() > 0
