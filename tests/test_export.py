"""Deployment: LIP detectors exported to TorchScript and ONNX (both exporters), run back by TorchScript
and onnxruntime with PyTorch's numbers; tools/export_model.py and tools/demo.py --exported."""
import os

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import RetinaNet, build_model

from lip_det import LIPConfigError
from lip_det.layers import POOLINGS
from lip_lab.export import FILE_SUFFIXES, ExportedModel, ExportedPredictor, ExportError, compare_outputs, export
from lip_lab.export import model_input, traceable
from lip_lab.demo import LIPPredictor, read_image_rgb

from helpers import QUICK_LIP, QUICK_VANILLA, load_tool, repo_cfg

EXPORT_TOOL = load_tool("export_model")
DEMO = load_tool("demo")
QUICK = QUICK_LIP.removeprefix("configs/")
R50_DETECTORS = ["faster_rcnn_lip_r50.yaml", "retinanet_lip_r50.yaml", "mask_rcnn_lip_r50.yaml"]
RANDOM_POOLINGS = ("stochastic", "s3pool")
"""Operators that sample at random in training: they export in eval mode only."""
SMALL = ("INPUT.MIN_SIZE_TEST", 96, "INPUT.MAX_SIZE_TEST", 160)


def random_model(config, *opts):
    """``config``'s model, randomly initialised; RetinaNet's class scores spread around 0.5 (logit
    weights std 0.05, no bias): at its initialisation every score is ~0.01, so nothing passes its
    threshold."""
    torch.manual_seed(0)
    model = build_model(repo_cfg(config, *SMALL, *opts)).eval()
    if isinstance(model, RetinaNet):
        torch.nn.init.normal_(model.head.cls_score.weight, std=0.05)
        torch.nn.init.zeros_(model.head.cls_score.bias)
    return model


def image(height=96, width=128, seed=0):
    """(3, H, W) float image with values 0..255, as a resized test image."""
    return torch.randint(0, 256, (3, height, width), generator=torch.Generator().manual_seed(seed)).float()


def exported_matches(module, names, path, sizes=((96, 128), (112, 160))):
    """Runs the exported file on images of ``sizes`` (H, W dynamic) and compares with ``module``;
    returns the largest relative difference over all outputs and sizes, and the comparisons."""
    exported = ExportedModel(str(path))
    reports = []
    for k, (height, width) in enumerate(sizes):
        sample = image(height, width, seed=k)
        with torch.no_grad():
            reference = dict(zip(names, module(sample)))
        reports.append(compare_outputs(reference, exported(sample), score_threshold=0.05))
    worst = max(value[1] for report in reports for name, value in report.items()
                if name != "detections" and value is not None)
    return worst, reports


def check_detector_export(model, path, fmt, exporter="torchscript"):
    module, names = traceable(model, image(), "model")
    export(module, image(), names, path, fmt, exporter)
    with torch.no_grad():
        assert len(dict(zip(names, module(image())))["scores"]) > 0  # something to compare
    worst, reports = exported_matches(module, names, path)
    for report in reports:
        assert all(value is not None for value in report.values()), report  # every output, same shapes
        kept, kept_exported, same_classes = report["detections"]
        assert kept == kept_exported and same_classes, report
    assert worst <= 1e-4, reports
    return names


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_quick_lip_detector_exports_and_matches_pytorch(tmp_path, fmt):
    names = check_detector_export(random_model(QUICK), tmp_path / ("model" + FILE_SUFFIXES[fmt]), fmt)
    assert sorted(names) == ["image_size", "pred_boxes", "pred_classes", "scores"]


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("config", R50_DETECTORS)
def test_r50_lip_detectors_export_and_match_pytorch(tmp_path, config, fmt):
    names = check_detector_export(random_model(config), tmp_path / ("model" + FILE_SUFFIXES[fmt]), fmt)
    assert ("pred_masks" in names) == config.startswith("mask")


@pytest.mark.parametrize("config", [QUICK, *R50_DETECTORS[:2]])
def test_dynamo_exporter_exports_lip_backbones(tmp_path, config):
    """torch.onnx.export(dynamo=True): lip2d's custom ops become plain ops under torch.export."""
    model = random_model(config)
    module, names = traceable(model, image(), "backbone")
    export(module, image(), names, tmp_path / "backbone.onnx", "onnx", "dynamo")
    worst, _ = exported_matches(module, names, tmp_path / "backbone.onnx", sizes=((96, 128), (128, 96)))
    assert names == list(model.backbone.output_shape()) and worst <= 1e-5


def test_dynamo_exporter_on_a_whole_detector_is_one_clear_error(tmp_path):
    """Detectron2's proposal filtering branches on tensor values, which torch.export cannot trace."""
    module, names = traceable(random_model(QUICK), image(), "model")
    with pytest.raises(ExportError, match="dynamo ONNX exporter failed .*use --onnx-exporter torchscript"):
        export(module, image(), names, tmp_path / "model.onnx", "onnx", "dynamo")
    assert os.listdir(tmp_path) == []  # no partial file


@pytest.mark.slow
@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
@pytest.mark.parametrize("pooling", POOLINGS)
def test_every_pooling_operator_exports_in_eval_mode(tmp_path, pooling, exporter):
    module, names = traceable(random_model(QUICK, "MODEL.LIP.POOLING", pooling), image(), "backbone")
    export(module, image(), names, tmp_path / "backbone.onnx", "onnx", exporter)
    worst, _ = exported_matches(module, names, tmp_path / "backbone.onnx")
    assert worst <= 1e-5


@pytest.mark.parametrize("pooling", RANDOM_POOLINGS)
def test_random_operators_refuse_export_in_training_mode(pooling):
    module, _ = traceable(random_model(QUICK, "MODEL.LIP.POOLING", pooling), image(), "backbone")
    module.train()
    with pytest.raises(LIPConfigError, match=f"'{pooling}' samples at random .* call model.eval"):
        torch.jit.trace(module, (image(),), check_trace=False)


@pytest.fixture(scope="module")
def quick_weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    DetectionCheckpointer(random_model(QUICK), save_dir=str(folder)).save("quick")
    return str(folder / "quick.pth")


def run_export_tool(capsys, *args, config=QUICK_LIP, opts=()):
    status = EXPORT_TOOL.main(["--config-file", config, *args, "--repeats", "1", *SMALL_OPTS, *opts])
    out = capsys.readouterr()
    return status, out.out, out.err


SMALL_OPTS = [str(v) for v in SMALL]


@pytest.mark.parametrize("fmt,suffix", [("onnx", "model.onnx"), ("torchscript", "model.ts")])
def test_export_tool_writes_checks_and_times(tmp_path, capsys, quick_weights, fmt, suffix):
    status, out, err = run_export_tool(capsys, "--format", fmt, "--output", str(tmp_path),
                                       opts=["MODEL.WEIGHTS", quick_weights])
    assert status == 0, err
    assert os.listdir(tmp_path) == [suffix]
    assert f"wrote {tmp_path / suffix}" in out and "pred_boxes: max |diff|" in out
    assert "classes identical" in out and "inference on CPU" in out and "ms (x" in out


def test_export_tool_backbone_with_the_dynamo_exporter(tmp_path, capsys):
    status, out, err = run_export_tool(capsys, "--part", "backbone", "--onnx-exporter", "dynamo",
                                       "--output", str(tmp_path))
    assert status == 0, err
    assert os.listdir(tmp_path) == ["backbone.onnx"] and "p2: max |diff|" in out


@pytest.mark.parametrize("problem", ["weights of another config", "missing weights", "unwritable output",
                                     "dynamo on a detector", "unreadable sample image"])
def test_export_tool_bad_input_is_one_line(tmp_path, capsys, quick_weights, problem):
    output = tmp_path / "out"
    args, opts = ["--output", str(output)], []
    if problem == "weights of another config":
        DetectionCheckpointer(random_model(QUICK_VANILLA.removeprefix("configs/")), save_dir=str(tmp_path)).save("v")
        opts = ["MODEL.WEIGHTS", str(tmp_path / "v.pth")]
    elif problem == "missing weights":
        opts = ["MODEL.WEIGHTS", str(tmp_path / "none.pth")]
    elif problem == "unwritable output":
        (tmp_path / "file").write_text("")
        args = ["--output", str(tmp_path / "file" / "out")]
    elif problem == "dynamo on a detector":
        args += ["--onnx-exporter", "dynamo", "--sample-image", DEMO.sample_image_paths()[1]]
    else:
        (tmp_path / "broken.jpg").write_bytes(b"not an image")
        args += ["--sample-image", str(tmp_path / "broken.jpg")]
    status, _, err = run_export_tool(capsys, *args, opts=opts)
    assert status == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    expected = {"weights of another config": "do not fit this model", "missing weights": "file not found",
                "unwritable output": "cannot write to --output", "dynamo on a detector": "--onnx-exporter torchscript",
                "unreadable sample image": "--sample-image"}[problem]
    assert expected in err
    assert not (output / "model.onnx").exists()


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_exported_predictor_equals_the_pytorch_predictor(tmp_path, quick_weights, fmt):
    """The demo's path: resize, exported model, final resize to the original image, as PyTorch does."""
    cfg = repo_cfg(QUICK, *SMALL, "MODEL.WEIGHTS", quick_weights, "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0)
    predictor = LIPPredictor(cfg)
    photo = read_image_rgb(DEMO.sample_image_paths()[1])[0][:, :, ::-1].copy()  # BGR, as the demo reads it
    sample = model_input(photo, predictor.aug, predictor.input_format)
    module, names = traceable(predictor.model, sample, "model")
    path = tmp_path / ("model" + FILE_SUFFIXES[fmt])
    export(module, sample, names, path, fmt)
    want, got = predictor(photo)["instances"], ExportedPredictor(cfg, str(path))(photo)["instances"]
    assert got.image_size == want.image_size == photo.shape[:2] and len(got) == len(want) > 0
    torch.testing.assert_close(got.pred_boxes.tensor, want.pred_boxes.tensor, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(got.scores, want.scores, rtol=1e-4, atol=1e-5)
    assert torch.equal(got.pred_classes, want.pred_classes)


def test_demo_runs_an_exported_model(tmp_path, capsys, quick_weights):
    path = tmp_path / "model.onnx"
    assert run_export_tool(capsys, "--output", str(tmp_path), opts=["MODEL.WEIGHTS", quick_weights])[0] == 0
    out = tmp_path / "drawn.png"
    status = DEMO.main(["--config-file", QUICK_LIP, "--exported", str(path), "--input",
                        DEMO.sample_image_paths()[1], "--output", str(out), "--opts", *SMALL_OPTS])
    err = capsys.readouterr().err
    assert status == 0 and out.is_file() and "1 image(s) processed" in err, err
    status = DEMO.main(["--config-file", QUICK_LIP, "--exported", str(path), "--show-importance", "--input",
                        DEMO.sample_image_paths()[1], "--output", str(out), "--opts", *SMALL_OPTS])
    err = capsys.readouterr().err
    assert status == 2 and "--show-importance reads the PyTorch model" in err and err.count("\n") == 1
