"""tools/demo.py: images, folders, globs, video, importance maps, and every kind of bad input."""
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model
from PIL import Image

from lip_det import get_lip_cfg
from lip_lab.demo import ImportanceRecorder, LIPPredictor, render_importance_grid
from lip_det.layers import ConvLogit

from helpers import CONFIGS, REPO, load_tool

DEMO = load_tool("demo")
sample_image_paths = DEMO.sample_image_paths

LIP_CONFIG = str(CONFIGS / "quick" / "faster_rcnn_lip_r18_shapes.yaml")  # every LIP slot, small and fast
SMALL = ["INPUT.MIN_SIZE_TEST", "96", "INPUT.MAX_SIZE_TEST", "160", "MODEL.DEVICE", "cpu"]
CAT, CAMERA = sample_image_paths()[1], os.path.join(os.path.dirname(sample_image_paths()[0]), "camera.png")


@pytest.fixture(scope="module")
def lip_weights(tmp_path_factory):
    """A LIP checkpoint whose logit heads are random, so importance maps have structure."""
    cfg = get_lip_cfg(LIP_CONFIG, ["MODEL.WEIGHTS", "", *SMALL])
    torch.manual_seed(0)
    model = build_model(cfg)
    for module in model.modules():
        if isinstance(module, ConvLogit):
            torch.nn.init.normal_(module.conv.weight, std=0.5)
    folder = tmp_path_factory.mktemp("weights")
    DetectionCheckpointer(model, save_dir=str(folder)).save("random_logits")
    return str(folder / "random_logits.pth")


def run_demo(capsys, *args, config=LIP_CONFIG, weights=""):
    status = DEMO.main(["--config-file", config, *args, "--opts", "MODEL.WEIGHTS", weights, *SMALL])
    return status, capsys.readouterr().err


def test_folder_glob_and_output_folder(tmp_path, capsys, lip_weights):
    photos = tmp_path / "photos"
    photos.mkdir()
    for path in sample_image_paths()[:2]:
        shutil.copy(path, photos)
    shutil.copy(CAT, tmp_path / "extra_cat.png")
    out = tmp_path / "out"
    status, err = run_demo(capsys, "--input", str(photos), str(tmp_path / "extra_*.png"),
                           "--output", str(out), "--show-importance", weights=lip_weights)
    assert status == 0
    names = sorted(os.listdir(out))
    assert names == sorted(["astronaut.png", "astronaut_importance.png", "chelsea.png",
                            "chelsea_importance.png", "extra_cat.png", "extra_cat_importance.png"])
    assert "3 image(s) processed, 0 skipped" in err
    drawn = cv2.imread(str(out / "chelsea.png"))
    assert drawn.shape[:2] == cv2.imread(CAT).shape[:2]


def test_single_input_to_output_file(tmp_path, capsys):
    out = tmp_path / "result.jpg"
    status, err = run_demo(capsys, "--input", CAT, "--output", str(out), "--show-importance")
    assert status == 0 and out.is_file() and (tmp_path / "result_importance.png").is_file()
    assert "1 image(s) processed" in err


def test_bad_inputs_are_skipped_with_one_line_each(tmp_path, capsys):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8 this is not a jpeg")
    rgba = tmp_path / "rgba.png"
    Image.fromarray(np.random.RandomState(0).randint(0, 255, (64, 80, 4), np.uint8), "RGBA").save(rgba)
    empty = tmp_path / "empty"
    empty.mkdir()
    status, err = run_demo(capsys, "--input", str(corrupt), CAMERA, str(rgba), str(empty),
                           str(tmp_path / "missing.png"), "--output", str(tmp_path / "out"))
    assert status == 0
    lines = err.splitlines()
    expected = [f"{corrupt}: cannot decode image", f"{CAMERA}: grayscale image converted to RGB",
                f"{rgba}: RGBA image converted to RGB", f"{empty}: folder has no images",
                f"{tmp_path / 'missing.png'}: no such file, folder or matching glob"]
    for text in expected:
        assert sum(text in line for line in lines) == 1, (text, err)
    assert "2 image(s) processed, 3 skipped" in err
    assert "Traceback" not in err
    assert sorted(os.listdir(tmp_path / "out")) == ["camera.png", "rgba.png"]


def test_nothing_processable_exits_nonzero(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.png").write_bytes(b"nope")
    status, err = run_demo(capsys, "--input", str(tmp_path / "empty"), str(tmp_path / "bad.png"),
                           "--output", str(tmp_path / "out"))
    assert status == 1 and "0 image(s) processed, 2 skipped" in err


@pytest.mark.parametrize("content,reason", [
    (None, "MODEL.WEIGHTS file not found"), (b"\x00garbage", "cannot read weights"),
])
def test_bad_weights_file_is_one_line(tmp_path, capsys, content, reason):
    weights = tmp_path / "model.pth"
    if content is not None:
        weights.write_bytes(content)
    status, err = run_demo(capsys, "--input", CAT, weights=str(weights))
    assert status == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and reason in err and "model.pth" in err


class NotAWeight:
    """Any pickled object that is not a tensor: weights_only loading must refuse it."""


def test_weights_load_without_unpickling_code(tmp_path, capsys, lip_weights):
    checkpoint = torch.load(lip_weights, weights_only=True)
    checkpoint["extra"] = NotAWeight()
    unsafe = tmp_path / "unsafe.pth"
    torch.save(checkpoint, unsafe)
    status, err = run_demo(capsys, "--input", CAT, weights=str(unsafe))
    assert status == 2 and "cannot read weights" in err and "Weights only load failed" in err


def test_vanilla_model_with_show_importance_still_runs(tmp_path, capsys):
    status, err = run_demo(capsys, "--input", CAT, "--output", str(tmp_path), "--show-importance",
                           config=str(CONFIGS / "quick" / "faster_rcnn_r18_shapes.yaml"))
    assert status == 0 and "no LIP layers" in err
    assert os.listdir(tmp_path) == ["chelsea.png"]


@pytest.mark.slow
def test_video_input(tmp_path, capsys):
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (96, 64))
    for i in range(3):
        writer.write(np.full((64, 96, 3), 40 * i, np.uint8))
    writer.release()
    status, err = run_demo(capsys, "--video-input", str(video), "--output", str(tmp_path / "out.avi"))
    assert status == 0 and "3 image(s) processed" in err
    frames = cv2.VideoCapture(str(tmp_path / "out.avi"))
    assert int(frames.get(cv2.CAP_PROP_FRAME_COUNT)) == 3


def test_importance_maps_cover_every_lip_layer(lip_weights):
    cfg = get_lip_cfg(LIP_CONFIG, ["MODEL.WEIGHTS", lip_weights, *SMALL])
    predictor = LIPPredictor(cfg)
    image = cv2.imread(CAT)
    with ImportanceRecorder(predictor.model) as recorder:
        predictor(image)
    assert list(recorder.maps) == ["stem", "res3", "res3 shortcut", "res4", "res4 shortcut",
                                   "res5", "res5 shortcut"]
    padded = recorder.input_size
    for title, stride in [("stem", 2), ("res3", 4), ("res4", 8), ("res5", 16)]:
        assert recorder.maps[title].shape == (padded[0] // stride, padded[1] // stride)
        assert recorder.maps[title].std() > 0
    resized = predictor.resized_size(image)
    assert resized == predictor.aug.get_transform(image).apply_image(image).shape[:2]
    grid = render_importance_grid(image[:, :, ::-1], recorder.maps, padded, resized)
    height, width = image.shape[:2]
    assert grid.shape == (2 * (height + 28), 4 * width, 3)


def test_importance_maps_with_the_official_instance_norm_logits_cover_every_lip_layer():
    """On the CPU a LIP block trains through one memory-lean node; at inference (no gradients) it runs its
    modules, so their hooks record every map."""
    cfg = get_lip_cfg(str(CONFIGS / "faster_rcnn_lip_r50.yaml"), ["MODEL.WEIGHTS", "", *SMALL])
    assert cfg.MODEL.LIP.LOGIT_NORM == "IN" and cfg.MODEL.LIP.RECOMPUTE_LOGITS is None
    predictor = LIPPredictor(cfg)
    with ImportanceRecorder(predictor.model) as recorder:
        predictor(cv2.imread(CAT))
    assert list(recorder.maps) == ["stem", "res3", "res3 shortcut", "res4", "res4 shortcut", "res5", "res5 shortcut"]


def test_zero_initialised_lip_has_uniform_importance():
    cfg = get_lip_cfg(LIP_CONFIG, ["MODEL.WEIGHTS", "", *SMALL])
    predictor = LIPPredictor(cfg)
    with ImportanceRecorder(predictor.model) as recorder:
        predictor(np.zeros((80, 120, 3), np.uint8))
    for heat in recorder.maps.values():
        np.testing.assert_allclose(heat, np.exp(6.0), rtol=1e-5)


@pytest.mark.slow
def test_tool_runs_from_another_directory(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "demo.py"), "--config-file", LIP_CONFIG,
         "--samples", "--output", "out", "--confidence-threshold", "0.9", "MODEL.WEIGHTS", "", *SMALL],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(os.listdir(tmp_path / "out")) == len(sample_image_paths())


@pytest.mark.parametrize("argv,inputs,opts", [
    (["--input", "a.png", "b/", "--opts", "MODEL.DEVICE", "cpu"], ["a.png", "b/"], ["MODEL.DEVICE", "cpu"]),
    (["--input", "a.png", "--show-importance", "MODEL.DEVICE", "cpu"], ["a.png"], ["MODEL.DEVICE", "cpu"]),
])
def test_config_overrides_follow_opts_or_another_option(argv, inputs, opts):
    args = DEMO.build_parser().parse_args(["--config-file", "c.yaml", *argv])
    assert args.input == inputs and list(args.opts) + list(args.flag_opts) == opts


def test_config_key_among_inputs_is_one_line(capsys):
    status = DEMO.main(["--config-file", LIP_CONFIG, "--input", CAT, "MODEL.WEIGHTS", ""])
    err = capsys.readouterr().err
    assert status == 2
    assert err.strip() == "error: --input MODEL.WEIGHTS is a config key: put config overrides after --opts"


@pytest.mark.parametrize("width,panel", [(150, 320), (400, 400), (1200, 480)])
def test_importance_panels_are_readable_at_any_image_size(width, panel):
    image = np.zeros((width // 2, width, 3), np.uint8)
    maps = {"stem": np.random.RandomState(0).rand(width // 4, width // 2), "res3": np.ones((4, 8))}
    grid = render_importance_grid(image, maps, (width // 2, width), (width // 2, width))
    height = round(image.shape[0] * panel / width)
    assert grid.shape == (height + 28, 4 * panel, 3)
