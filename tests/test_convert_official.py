"""Official LIP-ResNet ImageNet checkpoints -> Detectron2: exact names, exact features."""
import pickle

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model

from helpers import load_tool, repo_cfg
from lip_det import get_lip_cfg
from lip_lab.checkpoint import CheckpointError, LIPCheckpointer, convert_to_d2
from lip_det.modeling.backbone import build_lip_resnet_backbone
from official_lip_resnet_reference import OfficialLIPResNet, randomize_

FEATURES = ["res2", "res3", "res4", "res5"]


def lip_trunk(norm="FrozenBN", depth=50):
    cfg = get_lip_cfg(opts=["MODEL.RESNETS.DEPTH", depth, "MODEL.RESNETS.NORM", norm,
                            "MODEL.RESNETS.OUT_FEATURES", FEATURES])
    return build_lip_resnet_backbone(cfg, ShapeSpec(channels=3))


@pytest.fixture(scope="module")
def official():
    """A randomised LIP-ResNet-50 in the official layout and its checkpoint file."""
    return randomize_(OfficialLIPResNet()).eval()


@pytest.fixture(scope="module")
def official_file(official, tmp_path_factory):
    path = tmp_path_factory.mktemp("official") / "lip_resnet-50.pth"
    torch.save(official.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def converted(official_file, tmp_path_factory):
    output = tmp_path_factory.mktemp("d2") / "lip_resnet50_d2.pkl"
    return convert_to_d2(official_file, output)


def read_pkl(path):
    with open(path, "rb") as f:
        return pickle.load(f)


def test_reference_has_the_official_parameter_count(official):
    assert sum(p.numel() for p in official.parameters()) == 23_864_232


def test_every_official_tensor_maps_to_exactly_one_trunk_weight(official, converted):
    official_keys = official.state_dict().keys()
    dropped = [k for k in official_keys if k.startswith("fc.") or k.endswith("num_batches_tracked")]
    assert sorted(converted.dropped) == sorted(dropped)
    data = read_pkl(converted.output)
    assert len(data["model"]) == converted.num_tensors == len(official_keys) - len(dropped)
    assert data["matching_heuristics"] is True and "LIP-ResNet-50" in data["__author__"]
    # the written names are exactly the trunk's: nothing missing, nothing unexpected
    assert set(data["model"]) == set(lip_trunk().state_dict())
    assert converted.depth == 50


@pytest.mark.parametrize("norm", ["FrozenBN", pytest.param("BN", marks=pytest.mark.slow)])
def test_converted_features_equal_the_official_model(official, converted, norm):
    trunk = lip_trunk(norm)
    checkpointer = LIPCheckpointer(trunk)
    checkpointer.load(converted.output)
    assert checkpointer.trunk_load.new == [] and len(checkpointer.trunk_load.state_dict) == converted.num_tensors
    x = torch.randn(2, 3, 67, 91, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got = trunk.eval()(x)
        want = official.features(x)
    for name, ref in zip(FEATURES, want):
        assert got[name].shape == ref.shape
        err = (got[name] - ref).abs().max().item()
        assert err < 1e-5 * max(1.0, ref.abs().max().item()), (name, err)


def test_loads_exactly_into_a_faster_rcnn_and_like_detectron2_would(converted, official_file):
    weights = {k: torch.as_tensor(v) for k, v in read_pkl(converted.output)["model"].items()}
    for loader, path in ((LIPCheckpointer, converted.output), (DetectionCheckpointer, converted.output),
                         (LIPCheckpointer, official_file)):
        model = build_model(repo_cfg("faster_rcnn_lip_r50.yaml"))
        loader(model).load(str(path))
        state = model.state_dict()
        bottom_up = {k[len("backbone.bottom_up."):]: v for k, v in state.items()
                     if k.startswith("backbone.bottom_up.")}
        assert bottom_up.keys() == weights.keys(), (loader, path)
        assert all(torch.equal(bottom_up[k], weights[k]) for k in weights), (loader, path)


def test_lip_checkpointer_fills_the_trunk_of_a_detector(converted):
    model = build_model(repo_cfg("faster_rcnn_lip_r50.yaml"))
    checkpointer = LIPCheckpointer(model)
    checkpointer.load(str(converted.output))
    load = checkpointer.trunk_load
    assert load.prefix == "backbone.bottom_up." and load.new == []
    assert set(load.state_dict) == {k for k in model.state_dict() if k.startswith("backbone.bottom_up.")}
    assert "into backbone.bottom_up" in load.summary()


def test_wrapped_data_parallel_checkpoint_converts_the_same(official, converted, tmp_path):
    wrapped = {
        "epoch": 90,
        "arch": "resnet50",
        "state_dict": {f"module.{k}": v for k, v in official.state_dict().items()},
        "best_acc1": torch.tensor(78.19),
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "momentum": 0.9, "params": [0, 1]}]},
    }
    torch.save(wrapped, tmp_path / "checkpoint.pth.tar")
    result = convert_to_d2(tmp_path / "checkpoint.pth.tar", tmp_path / "out.pkl")
    got, want = read_pkl(result.output)["model"], read_pkl(converted.output)["model"]
    assert got.keys() == want.keys()
    assert all((got[k] == want[k]).all() for k in want)


def test_unmapped_tensor_is_named_in_a_one_line_error(official, tmp_path):
    state = dict(official.state_dict())
    state["layer3.0.extra_gate.weight"] = torch.zeros(3)
    torch.save(state, tmp_path / "extra.pth")
    with pytest.raises(CheckpointError, match="no Detectron2 name: layer3.0.extra_gate.weight") as err:
        convert_to_d2(tmp_path / "extra.pth", tmp_path / "out.pkl")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out.pkl").exists()


@pytest.mark.parametrize("key", ["layer3.0.downsample.lip.postprocessing.bn.bias", "layer4.2.bn3.running_var"])
def test_missing_tensor_is_named_in_a_one_line_error(official, tmp_path, key):
    state = {k: v for k, v in official.state_dict().items() if k != key}
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(CheckpointError) as err:
        convert_to_d2(tmp_path / "partial.pth", tmp_path / "out.pkl")
    message = str(err.value)
    assert "\n" not in message and ("missing" in message or "lacks" in message), message
    stage, block = int(key[5]) + 1, key.split(".")[1]
    assert f"res{stage}.{block}." in message


def test_tool_writes_the_file_and_states_the_input_settings(official_file, tmp_path, capsys):
    assert load_tool("convert_to_d2").main([str(official_file), str(tmp_path / "w.pkl")]) == 0
    out = capsys.readouterr().out
    assert "LIP-ResNet-50" in out and "RGB" in out and "STRIDE_IN_1X1: False" in out
    assert "123.675" in out and "58.395" in out


def test_tool_refuses_a_file_of_no_known_layout_in_one_line(tmp_path, capsys):
    torch.save({"encoder.weight": torch.zeros(2)}, tmp_path / "other.pth")
    assert load_tool("convert_to_d2").main([str(tmp_path / "other.pth"), str(tmp_path / "w.pkl")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: ") and "no known ResNet" in err
    assert not (tmp_path / "w.pkl").exists()


def test_pickled_objects_are_refused_in_one_line(official, tmp_path):
    torch.save({"state_dict": official.state_dict(), "args": NotATensor()}, tmp_path / "unsafe.pth")
    for load in (lambda p: convert_to_d2(p, tmp_path / "w.pkl"), lambda p: LIPCheckpointer(lip_trunk()).load(str(p))):
        with pytest.raises(CheckpointError, match="cannot read weights .*unsafe.pth .*Weights only load failed") as err:
            load(tmp_path / "unsafe.pth")
        assert "\n" not in str(err.value)


class NotATensor:
    """Any pickled object that is not a tensor: weights_only loading refuses it."""
