"""Weight files load without running code from them (issue 24): a ``.pkl`` through a restricted
unpickler, a ``.pth`` with ``weights_only``, on every path that reads weights (LIPCheckpointer: load,
resume, tools/train_net.py, tools/lazyconfig_train_net.py; the demo; the converter's inputs); genuine
Detectron2 ``.pkl`` files and the converter's outputs load exactly; a malformed file is one line."""
import builtins
import collections
import os
import pickle
import shlex
import subprocess
import sys

import numpy as np
import pytest
import torch
import torchvision
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone.resnet import build_resnet_backbone

from helpers import CONFIGS, REPO, load_tool
from lip_det import get_lip_cfg
from lip_lab.checkpoint import CheckpointError, LIPCheckpointer, convert_to_d2
from lip_lab.checkpoint.names import TORCHVISION, rename_to_trunk
from lip_lab.checkpoint.safe_load import SAFE_PICKLE_GLOBALS, WeightsUnpickler, load_weights_file

DEMO = load_tool("demo")
CAT = DEMO.sample_image_paths()[1]
QUICK = CONFIGS / "quick" / "faster_rcnn_lip_r18_shapes.yaml"
QUICK_LAZY = CONFIGS / "lazy" / "quick" / "faster_rcnn_lip_r18_shapes.py"
SMALL = ["INPUT.MIN_SIZE_TEST", "96", "INPUT.MAX_SIZE_TEST", "160", "MODEL.DEVICE", "cpu"]


class MarksOnLoad:
    """A class whose reconstruction runs code: it creates the marker file."""

    def __init__(self, marker):
        open(marker, "w").close()


class Call:
    """Pickles as ``fn(*args)``: what a malicious pickle makes the unpickler run."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


PAYLOADS = {  # kind -> (the global the pickle names, the call that creates the marker)
    "os.system": (f"{os.system.__module__}.system", lambda m: Call(os.system, f"touch {shlex.quote(str(m))}")),
    "custom class": (f"{__name__}.MarksOnLoad", lambda m: Call(MarksOnLoad, str(m))),
    "builtins.eval": ("builtins.eval", lambda m: Call(builtins.eval, f"open({str(m)!r}, 'w').close()")),
}


def write_payload(folder, kind, suffix=".pkl", name="evil"):
    """A file in Detectron2's format with one code-running entry; returns (marker, path)."""
    marker, path = folder / f"marker_{kind.replace(' ', '_')}", folder / f"{name}{suffix}"
    data = {"model": {"weight": np.zeros((1, 1), np.float32), "bias": PAYLOADS[kind][1](marker)},
            "__author__": "Detectron2 Model Zoo", "matching_heuristics": True}
    if suffix == ".pkl":
        with open(path, "wb") as f:
            pickle.dump(data, f)
    else:
        torch.save(data, path)
    return marker, path


def assert_one_line(message, path, *parts):
    assert "\n" not in message.strip() and str(path) in message, message
    for part in parts:
        assert part in message, (part, message)


def assert_refused(message, path, kind):
    assert_one_line(message, path, "refused to load weights", f"the global {PAYLOADS[kind][0]},",
                    "nothing from it was run", "re-convert it")


@pytest.mark.parametrize("kind", PAYLOADS)
def test_the_payloads_run_code_through_a_stock_detectron2_checkpointer(tmp_path, kind):
    """The files below are real attacks: Detectron2's own checkpointer runs them (which is why
    docs/usage.md tells users of DetectionCheckpointer to switch to LIPCheckpointer)."""
    marker, path = write_payload(tmp_path, kind)
    with pytest.raises(Exception):  # what follows the payload is not a weight
        DetectionCheckpointer(torch.nn.Linear(1, 1)).load(str(path))
    assert marker.exists()


def _load(path):
    LIPCheckpointer(torch.nn.Linear(1, 1)).load(str(path))


def _resume(path):
    (path.parent / "last_checkpoint").write_text(path.name)
    LIPCheckpointer(torch.nn.Linear(1, 1), save_dir=str(path.parent)).resume_or_load("", resume=True)


def _convert(path):
    convert_to_d2(path, path.parent / "out.pkl")


@pytest.mark.parametrize("load", [_load, _resume, _convert, load_weights_file], ids=["load", "resume", "convert", "api"])
@pytest.mark.parametrize("kind", PAYLOADS)
def test_code_in_a_pkl_is_refused_before_it_runs(tmp_path, kind, load):
    marker, path = write_payload(tmp_path, kind)
    with pytest.raises(CheckpointError) as err:
        load(path)
    assert_refused(str(err.value), path, kind)
    assert not marker.exists()
    assert not (tmp_path / "out.pkl").exists()


@pytest.mark.parametrize("suffix", [".pth", ".pyth"])
def test_torch_files_stay_weights_only_even_when_the_environment_asks_otherwise(tmp_path, suffix, monkeypatch):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # flips torch.load's default, not an explicit True
    marker, path = write_payload(tmp_path, "os.system", suffix)
    for load in (_load, _convert):
        with pytest.raises(CheckpointError) as err:
            load(path)
        assert_one_line(str(err.value), path, "cannot read weights", "Weights only load failed")
    assert not marker.exists()


@pytest.mark.parametrize("kind", PAYLOADS)
def test_demo_refuses_code_in_weights_in_one_line(tmp_path, capsys, kind):
    marker, path = write_payload(tmp_path, kind)
    status = DEMO.main(["--config-file", str(QUICK), "--input", CAT, "--output", str(tmp_path / "out"),
                        "--opts", "MODEL.WEIGHTS", str(path), *SMALL])
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert_refused(err, path, kind)
    assert not marker.exists() and not (tmp_path / "out").exists()


TRAIN_TOOLS = {
    "train_net": ("train_net", [QUICK, "--eval-only", "DATASETS.TEST", "('lip_shapes_mini_val',)",
                                "MODEL.WEIGHTS", "{weights}", "OUTPUT_DIR", "{out}"]),
    "lazyconfig_train_net": ("lazyconfig_train_net", [QUICK_LAZY, "--eval-only", "train.init_checkpoint={weights}",
                                                      "train.output_dir={out}", "train.device=cpu",
                                                      "train.amp.enabled=False",
                                                      "dataloader.test.dataset.names=lip_shapes_mini_val"]),
}


def _run_tool(tool, weights, out):
    name, args = TRAIN_TOOLS[tool]
    argv = ["--config-file", *(str(a).format(weights=weights, out=out) for a in args)]
    return subprocess.run([sys.executable, str(REPO / "tools" / f"{name}.py"), *argv], cwd=REPO, text=True,
                          capture_output=True, timeout=300)


def _error_line(proc):
    assert proc.returncode == 2 and "Traceback" not in proc.stdout + proc.stderr, proc.stdout[-3000:] + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.mark.slow
@pytest.mark.parametrize("tool", TRAIN_TOOLS)
def test_training_tools_refuse_code_in_weights_in_one_line(tmp_path, tool):
    marker, path = write_payload(tmp_path, "os.system")
    assert_refused(_error_line(_run_tool(tool, path, tmp_path / "out")), path, "os.system")
    assert not marker.exists()


@pytest.mark.slow
def test_the_issues_file_through_train_net_is_one_line(tmp_path):
    """The issue's reproduction after the payload: ``{"model": 3}`` died with ``'int' object is not iterable``."""
    path = tmp_path / "three.pkl"
    path.write_bytes(pickle.dumps({"model": 3}))
    assert_one_line(_error_line(_run_tool("train_net", path, tmp_path / "out")), path, "entry 'model' holds an int")


def trunk18():
    cfg = get_lip_cfg(opts=["MODEL.RESNETS.DEPTH", 18, "MODEL.RESNETS.RES2_OUT_CHANNELS", 64,
                            "MODEL.RESNETS.NORM", "FrozenBN", "MODEL.RESNETS.OUT_FEATURES", ["res2", "res3", "res4", "res5"]])
    return build_resnet_backbone(cfg, ShapeSpec(channels=3))


@pytest.mark.parametrize("protocol", [2, 4, pickle.HIGHEST_PROTOCOL])
def test_genuine_detectron2_pkl_loads_with_the_weights_of_the_source(tmp_path, protocol):
    torch.manual_seed(1)
    source = trunk18()
    for value in source.state_dict().values():  # FrozenBN stats too: every tensor differs from a fresh trunk's
        value.copy_(torch.randn_like(value))
    model = collections.OrderedDict((k, v.numpy().copy()) for k, v in source.state_dict().items())
    with open(tmp_path / "model_zoo.pkl", "wb") as f:
        pickle.dump({"model": model, "__author__": "Detectron2 Model Zoo", "matching_heuristics": True}, f, protocol)

    read = load_weights_file(tmp_path / "model_zoo.pkl")
    assert read["__author__"] == "Detectron2 Model Zoo" and read["matching_heuristics"] is True
    assert read["model"].keys() == model.keys() and all(np.array_equal(read["model"][k], v) for k, v in model.items())
    target = trunk18()
    LIPCheckpointer(target).load(str(tmp_path / "model_zoo.pkl"))
    assert target.state_dict().keys() == source.state_dict().keys()
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def _py2_string(text):
    return b"U" + bytes([len(text)]) + text  # SHORT_BINSTRING: a Python 2 str


def test_python2_caffe2_pickle_loads_as_detectron2_reads_it(tmp_path):
    """MSRA's ImageNet R-50.pkl is a Python 2 pickle of ``{"blobs": {name: array}}`` (numpy.core names)."""
    weights = np.array([1.5, -2.0, 0.25], np.float32)
    array = (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + _py2_string(b"b") + b"\x87R"
             b"(K\x01K\x03\x85cnumpy\ndtype\n" + _py2_string(b"f4") + b"K\x00K\x01\x87R(K\x03" + _py2_string(b"<")
             + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89" + _py2_string(weights.tobytes()) + b"tb")
    (tmp_path / "R-50.pkl").write_bytes(
        b"\x80\x02}(" + _py2_string(b"blobs") + b"}(" + _py2_string(b"conv1_w") + array
        + _py2_string(b"conv1_w_momentum") + array + b"u" + _py2_string(b"cfg") + _py2_string(b"...") + b"u."
    )
    read = load_weights_file(tmp_path / "R-50.pkl")
    assert read["__author__"] == "Caffe2" and read["matching_heuristics"] is True
    assert list(read["model"]) == ["conv1_w"] and np.array_equal(read["model"]["conv1_w"], weights)


class RecordingUnpickler(WeightsUnpickler):
    def find_class(self, module, name):
        self.names.add((module, name))
        return super().find_class(module, name)


@pytest.mark.parametrize("suffix", [".pkl", ".pth"])
def test_converter_outputs_load_under_the_same_rule_with_the_source_weights(tmp_path, suffix):
    resnet = torchvision.models.resnet18(weights=None)
    for value in resnet.state_dict().values():
        if value.is_floating_point():  # BN stats too; num_batches_tracked is dropped
            value.copy_(torch.randn_like(value))
    torch.save(resnet.state_dict(), tmp_path / "resnet18.pth")
    output = tmp_path / f"resnet18_d2{suffix}"
    convert_to_d2(tmp_path / "resnet18.pth", output)
    expected, _ = rename_to_trunk(resnet.state_dict(), TORCHVISION)

    if suffix == ".pkl":  # every global the file names is one the restricted unpickler admits
        with open(output, "rb") as f:
            unpickler = RecordingUnpickler(f, str(output))
            unpickler.names = set()
            unpickler.load()
        assert unpickler.names and unpickler.names <= SAFE_PICKLE_GLOBALS.keys()
    read = load_weights_file(output)["model"]
    assert read.keys() == expected.keys()
    assert all(torch.equal(torch.as_tensor(read[k]), v) for k, v in expected.items())
    target = trunk18()
    checkpointer = LIPCheckpointer(target)
    checkpointer.load(str(output))
    assert checkpointer.trunk_load.new == []
    for key, value in expected.items():
        assert torch.equal(target.state_dict()[key], value), key


def _truncated(path):
    model = {"weight": np.arange(4096, dtype=np.float32)}
    if path.suffix == ".pkl":
        data = pickle.dumps({"model": model, "__author__": "x"})
    else:
        torch.save({"model": {k: torch.from_numpy(v) for k, v in model.items()}}, path)
        data = path.read_bytes()
    return data[: len(data) // 2]


MALFORMED = {  # name -> (content, what the one line says)
    "model is 3": ({"model": 3}, "an int"),
    "a list": ([1, 2], "hold a list, not a checkpoint dict"),
    "empty dict": ({}, "hold an empty dict, not a checkpoint dict"),
    "empty model": ({"model": {}, "__author__": "x"}, "hold an empty dict where a dict of weights"),
    "string weight": ({"model": {"w": "0.5"}, "__author__": "x"}, "entry 'w' holds a str, not a tensor"),
    "truncated": (_truncated, "cannot read weights"),
}


def write_malformed(folder, name, suffix):
    content, _ = MALFORMED[name]
    path = folder / f"bad{suffix}"
    if callable(content):
        path.write_bytes(content(path))
    elif suffix == ".pkl":
        path.write_bytes(pickle.dumps(content))
    else:
        torch.save(content, path)
    return path


def test_an_object_array_is_one_line(tmp_path):
    (tmp_path / "bad.pkl").write_bytes(pickle.dumps({"model": {"w": np.array([None, 1])}, "__author__": "x"}))
    with pytest.raises(CheckpointError) as err:
        _load(tmp_path / "bad.pkl")
    assert_one_line(str(err.value), tmp_path / "bad.pkl", "entry 'w' holds a numpy array of object")


@pytest.mark.parametrize("suffix", [".pkl", ".pth"])
@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_weights_are_one_line(tmp_path, name, suffix):
    path = write_malformed(tmp_path, name, suffix)
    for load in (_load, _convert):
        with pytest.raises(CheckpointError) as err:
            load(path)
        assert_one_line(str(err.value), path, MALFORMED[name][1])


@pytest.mark.parametrize("name", ["model is 3", "a list", "empty dict", "truncated"])
def test_malformed_weights_stop_the_tools_with_one_line(tmp_path, capsys, name):
    path = write_malformed(tmp_path, name, ".pkl")
    status = DEMO.main(["--config-file", str(QUICK), "--input", CAT, "--output", str(tmp_path / "out"),
                        "--opts", "MODEL.WEIGHTS", str(path), *SMALL])
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert_one_line(err, path, MALFORMED[name][1])
    assert load_tool("convert_to_d2").main([str(path), str(tmp_path / "out.pkl")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert_one_line(err, path, MALFORMED[name][1])
