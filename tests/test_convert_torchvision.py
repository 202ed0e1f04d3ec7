"""torchvision / MSRA ResNet weights: vanilla round trip, LIP-ResNet warm start, bad files."""
import functools
import pickle
import re

import pytest
import torch
import torch.nn.functional as F
import torchvision
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone.resnet import build_resnet_backbone

from helpers import SHIPPED_CONFIGS, repo_cfg
from lip_det import get_lip_cfg
from lip_lab.checkpoint import TORCHVISION_PREPROCESSING, CheckpointError, LIPCheckpointer, convert_to_d2
from lip_det.modeling.backbone import build_lip_resnet_backbone
from official_lip_resnet_reference import randomize_

FEATURES = ["res2", "res3", "res4", "res5"]


def trunk(depth, builder=build_lip_resnet_backbone):
    cfg = get_lip_cfg(opts=[
        "MODEL.RESNETS.DEPTH", depth, "MODEL.RESNETS.NORM", "FrozenBN",
        "MODEL.RESNETS.RES2_OUT_CHANNELS", 64 if depth < 50 else 256,
        "MODEL.RESNETS.STRIDE_IN_1X1", False, "MODEL.RESNETS.OUT_FEATURES", FEATURES,
    ])
    return builder(cfg, ShapeSpec(channels=3))


def torchvision_features(model, x):
    """layer1..layer4 of a torchvision ResNet."""
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    out = []
    for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
        x = layer(x)
        out.append(x)
    return out


@pytest.fixture(scope="module")
def resnet50_file(tmp_path_factory):
    model = randomize_(torchvision.models.resnet50(weights=None), seed=3).eval()
    path = tmp_path_factory.mktemp("tv") / "resnet50.pth"
    torch.save(model.state_dict(), path)
    return model, path


def expected_lip_r50_new_keys():
    """Every LIP-R50 trunk tensor a vanilla ResNet-50 cannot provide: the LIP modules, and the
    1x1 conv2 (with its norm) that replaces the strided 3x3 of each LIP block."""
    head = ["logit.conv.weight", "logit.norm.weight", "logit.norm.bias"]
    new = {f"stem.lip.{k}" for k in head}
    for stage in ("res3", "res4", "res5"):
        new.update(f"{stage}.0.{lip}.{k}" for lip in ("lip", "shortcut_lip") for k in head)
        new.update(f"{stage}.0.logit_trunk.{m}{i}.{p}" for i in (1, 2) for m, p in
                   (("conv", "weight"), ("norm", "weight"), ("norm", "bias")))
        new.update(f"{stage}.0.conv2.{k}" for k in
                   ("weight", "norm.weight", "norm.bias", "norm.running_mean", "norm.running_var"))
    return new


@pytest.mark.parametrize("depth", [18, pytest.param(50, marks=pytest.mark.slow)])
def test_round_trip_gives_torchvision_features(depth, tmp_path):
    model = randomize_(getattr(torchvision.models, f"resnet{depth}")(weights=None), seed=depth).eval()
    torch.save(model.state_dict(), tmp_path / "tv.pth")
    result = convert_to_d2(tmp_path / "tv.pth", tmp_path / "tv_d2.pkl")
    assert result.depth == depth
    vanilla = trunk(depth, build_resnet_backbone)
    checkpointer = LIPCheckpointer(vanilla)
    checkpointer.load(str(tmp_path / "tv_d2.pkl"))
    assert checkpointer.trunk_load.new == []
    assert len(checkpointer.trunk_load.state_dict) == len(vanilla.state_dict())
    x = torch.randn(2, 3, 75, 61, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got, want = vanilla.eval()(x), torchvision_features(model, x)
    for name, ref in zip(FEATURES, want):
        err = (got[name] - ref).abs().max().item()
        assert err < 1e-5 * max(1.0, ref.abs().max().item()), (name, err)


def test_torchvision_weights_into_lip_resnet_report_exactly_the_new_keys(resnet50_file):
    model, path = resnet50_file
    lip = trunk(50)
    checkpointer = LIPCheckpointer(lip)
    checkpointer.load(str(path))
    load = checkpointer.trunk_load
    assert set(load.new) == expected_lip_r50_new_keys()
    assert set(load.state_dict) | set(load.new) == set(lip.state_dict())
    state = lip.state_dict()
    assert all(torch.equal(state[k], v) for k, v in load.state_dict.items())
    for key in load.new:
        if key.endswith("logit.conv.weight"):  # LIP heads keep their zero init
            assert not state[key].any(), key
        if ".conv2.norm." in key:  # the new 1x1 conv2 is followed by an identity norm, not the 3x3's
            assert torch.equal(state[key], torch.ones_like(state[key]) * key.endswith(("weight", "var"))), key
    summary = load.summary()
    assert "res4.0.conv2.norm" in summary and "stem.lip.logit.conv" in summary and "res5.0.logit_trunk.norm2" in summary


def test_warm_started_stem_is_the_average_pooled_twin(resnet50_file):
    model, path = resnet50_file
    lip = trunk(50)
    LIPCheckpointer(lip).load(str(path))
    x = torch.randn(1, 3, 65, 47, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        features = model.relu(model.bn1(model.conv1(x)))
        want = F.avg_pool2d(features, 3, 2, 1, count_include_pad=False)
        got = lip.eval().stem(x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_converted_torchvision_file_warm_starts_the_lip_faster_rcnn(resnet50_file, tmp_path):
    from detectron2.modeling import build_model

    _, path = resnet50_file
    convert_to_d2(path, tmp_path / "torchvision_resnet50_d2.pkl")
    checkpointer = LIPCheckpointer(build_model(repo_cfg("faster_rcnn_lip_r50.yaml")))
    checkpointer.load(str(tmp_path / "torchvision_resnet50_d2.pkl"))
    assert checkpointer.trunk_load.prefix == "backbone.bottom_up."
    assert set(checkpointer.trunk_load.new) == expected_lip_r50_new_keys()


def msra_name(key):
    """Detectron2 trunk name -> the Caffe2 blob name of MSRA's ImageNet R-50.pkl."""
    key = key.replace("norm.weight", "bn.s").replace("norm.bias", "bn.b").replace(".weight", ".w")
    key = key.replace("stem.conv1.bn.", "res.conv1.bn.").replace("stem.conv1.", "conv1.")
    for ours, theirs in (("shortcut", "branch1"), ("conv1", "branch2a"), ("conv2", "branch2b"), ("conv3", "branch2c")):
        key = re.sub(rf"^(res\d\.\d+)\.{ours}\.", rf"\1.{theirs}.", key)
    return key.replace(".", "_")


def test_msra_caffe2_pickle_warm_starts_a_lip_resnet(tmp_path):
    vanilla = trunk(50, build_resnet_backbone).state_dict()
    blobs = {msra_name(k): v.numpy() for k, v in vanilla.items() if "running_" not in k}
    blobs.update(fc1000_w=torch.zeros(1000, 2048).numpy(), fc1000_b=torch.zeros(1000).numpy())
    blobs["res2_0_branch2a_w_momentum"] = blobs["res2_0_branch2a_w"]
    with open(tmp_path / "R-50.pkl", "wb") as f:
        pickle.dump(blobs, f)
    checkpointer = LIPCheckpointer(trunk(50))
    checkpointer.load(str(tmp_path / "R-50.pkl"))
    load = checkpointer.trunk_load
    bn_stats = set(load.new) - expected_lip_r50_new_keys()
    assert expected_lip_r50_new_keys() <= set(load.new)
    # 53 BNs lack stats; those of the 3 new conv2s are new with their conv
    assert len(bn_stats) == 2 * (53 - 3) and all(k.endswith(("running_mean", "running_var")) for k in bn_stats)
    assert torch.equal(load.state_dict["res4.5.conv3.norm.weight"], vanilla["res4.5.conv3.norm.weight"])
    assert {"fc1000_w", "fc1000_b"} <= set(load.dropped)  # Detectron2 already drops _momentum blobs


def test_resnet18_weights_for_a_lip_r50_give_one_clear_line(tmp_path):
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "r18.pth")
    with pytest.raises(CheckpointError, match="ResNet-18.*do not fit this model") as err:
        LIPCheckpointer(trunk(50)).load(str(tmp_path / "r18.pth"))
    assert "\n" not in str(err.value) and "MODEL.RESNETS.DEPTH" in str(err.value)


@pytest.mark.parametrize("suffix", [".pth", ".pkl"])
def test_truncated_file_gives_one_clear_line(resnet50_file, tmp_path, suffix):
    _, path = resnet50_file
    source = path if suffix == ".pth" else convert_to_d2(path, tmp_path / "full.pkl").output
    data = open(source, "rb").read()
    (tmp_path / f"cut{suffix}").write_bytes(data[: len(data) // 2])
    for load in (lambda p: LIPCheckpointer(trunk(50)).load(p), lambda p: convert_to_d2(p, tmp_path / "o.pkl")):
        with pytest.raises(CheckpointError, match="cannot read weights .*cut.*truncated") as err:
            load(str(tmp_path / f"cut{suffix}"))
        assert "\n" not in str(err.value)


def test_conversion_never_leaves_a_half_written_file(resnet50_file, tmp_path, monkeypatch):
    _, path = resnet50_file
    target = tmp_path / "w.pkl"
    target.write_bytes(b"previous")

    def killed_mid_write(obj, f, **kwargs):
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr("pickle.dump", killed_mid_write)
    with pytest.raises(KeyboardInterrupt):
        convert_to_d2(path, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.pkl"] and target.read_bytes() == b"previous"


@pytest.mark.parametrize("name", SHIPPED_CONFIGS)
def test_shipped_configs_use_the_preprocessing_of_their_weights(name):
    cfg = repo_cfg(name)
    for key, value in TORCHVISION_PREPROCESSING.items():
        got = functools.reduce(lambda node, part: node[part], key.split("."), cfg)
        if isinstance(value, list):
            assert list(got) == pytest.approx(value), (name, key)
        else:
            assert got == value, (name, key)


def test_trunk_without_res5_takes_full_resnet_weights(resnet50_file):
    """C4 detectors build res2..res4 in the backbone (res5 sits in the ROI heads)."""
    _, path = resnet50_file
    cfg = get_lip_cfg(opts=["MODEL.RESNETS.OUT_FEATURES", ["res4"]])
    model = build_lip_resnet_backbone(cfg, ShapeSpec(channels=3))
    checkpointer = LIPCheckpointer(model)
    checkpointer.load(str(path))
    load = checkpointer.trunk_load
    assert any(k.startswith("res5.") for k in load.dropped)
    assert not any(k.startswith("res5") for k in model.state_dict())
    assert set(load.state_dict) | set(load.new) == set(model.state_dict())
