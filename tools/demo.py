#!/usr/bin/env python
"""Detections and LIP importance maps on images, folders, globs or a video.

    python tools/demo.py --config-file configs/faster_rcnn_lip_r50.yaml \\
        --input photos/ --output out/ --show-importance --opts MODEL.WEIGHTS model_final.pth
    python tools/demo.py --config-file configs/faster_rcnn_lip_r50.yaml --exported exported/model.onnx \\
        --input photos/ --output out/

Config overrides (KEY VALUE ...) come last: after --opts, or after any option but --input.
"""
import argparse
import os
import sys
import time

import cv2
import torch
import tqdm
from detectron2.data import MetadataCatalog
from detectron2.utils.visualizer import Visualizer

from lip_lab.cli import (
    UsageError,
    add_register_coco_argument,
    check_weights,
    is_config_key,
    load_config,
    register_user_datasets,
    reports_input_errors,
)
from lip_lab.demo import ImportanceRecorder, LIPPredictor, UnreadableImage, expand_inputs, read_image_rgb
from lip_lab.demo import render_importance_grid
from lip_lab.export import ExportedPredictor
from lip_lab.utils.atomic import atomic_open

SAMPLE_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg")
"""``--samples``: CC0 / public-domain photos that scikit-image ships (no download)."""


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, metavar="FILE")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", nargs="+", help="image files, globs (quote them) or folders")
    source.add_argument("--video-input", metavar="FILE", help="a video file")
    source.add_argument("--samples", action="store_true", help="scikit-image's sample photos")
    parser.add_argument("--output", default="demo_output",
                        help="output folder, or a file name for a single image / video (default: demo_output/)")
    parser.add_argument("--confidence-threshold", type=float, default=0.5)
    parser.add_argument("--show-importance", action="store_true",
                        help="also save <name>_importance.png: what each LIP layer weighs")
    parser.add_argument("--exported", metavar="FILE",
                        help="run this exported detector (.onnx by onnxruntime, .ts by TorchScript; from "
                        "tools/export_model.py) instead of PyTorch; the config still gives sizes and classes")
    add_register_coco_argument(parser)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ..., last")
    parser.add_argument("--opts", dest="flag_opts", nargs=argparse.REMAINDER, default=[],
                        help="config overrides, as in Detectron2's demo")
    return parser


def sample_image_paths():
    """Paths of :data:`SAMPLE_PHOTOS` inside the installed scikit-image."""
    try:
        import skimage
    except ImportError:
        raise UsageError("--samples needs scikit-image: pip install scikit-image") from None
    return [os.path.join(os.path.dirname(skimage.__file__), "data", name) for name in SAMPLE_PHOTOS]


def setup_cfg(args):
    opts = list(args.opts) + list(args.flag_opts)
    for key in ("MODEL.ROI_HEADS.SCORE_THRESH_TEST", "MODEL.RETINANET.SCORE_THRESH_TEST"):
        opts += [key, args.confidence_threshold]
    if "MODEL.DEVICE" not in opts[::2] and not torch.cuda.is_available():
        opts += ["MODEL.DEVICE", "cpu"]
    cfg = load_config(args.config_file, opts)
    misplaced = [item for item in args.input or [] if is_config_key(cfg, item) and not os.path.exists(item)]
    if misplaced:
        raise UsageError(f"--input {misplaced[0]} is a config key: put config overrides after --opts")
    check_weights(cfg)
    cfg.freeze()
    return cfg


def _say(message):
    print(f"demo: {message}", file=sys.stderr)


def _output_paths(output, source_path, single_input, suffix):
    """(detections path, importance path) for one input."""
    if single_input and os.path.splitext(output)[1] and not os.path.isdir(output):
        base, ext = os.path.splitext(output)
    else:
        base, ext = os.path.join(output, os.path.splitext(os.path.basename(source_path))[0]), suffix
    os.makedirs(os.path.dirname(base) or ".", exist_ok=True)
    return base + ext, base + "_importance.png"


def _write_rgb(path, image_rgb):
    ok, encoded = cv2.imencode(os.path.splitext(path)[1] or ".png", image_rgb[:, :, ::-1])
    if not ok:
        raise UsageError(f"cannot encode {path}; use a .png or .jpg output name")
    with atomic_open(path, "wb") as f:
        f.write(encoded.tobytes())


class DemoRunner:
    """Predicts, draws and saves; counts what it did for the summary line."""

    def __init__(self, cfg, show_importance, exported=None):
        if exported and show_importance:
            raise UsageError("--show-importance reads the PyTorch model's LIP layers; drop --exported or it")
        self.predictor = ExportedPredictor(cfg, exported) if exported else LIPPredictor(cfg)
        self.metadata = MetadataCatalog.get(cfg.DATASETS.TEST[0] if cfg.DATASETS.TEST else "__unused")
        self.recorder = ImportanceRecorder(self.predictor.model) if show_importance else None
        if self.recorder is not None and not self.recorder.lips:
            _say("--show-importance: this model has no LIP layers; saving detections only")
            self.recorder = None
        self.images = self.detections = 0
        self.seconds = 0.0

    def detect(self, image_rgb):
        """Returns (drawn RGB image, importance grid or None)."""
        start = time.perf_counter()
        if self.recorder is None:
            outputs, grid = self.predictor(image_rgb[:, :, ::-1]), None
        else:
            with self.recorder:
                outputs = self.predictor(image_rgb[:, :, ::-1])
            grid = render_importance_grid(
                image_rgb, self.recorder.maps, self.recorder.input_size, self.predictor.resized_size(image_rgb)
            )
        self.seconds += time.perf_counter() - start
        instances = outputs["instances"].to("cpu")
        self.images += 1
        self.detections += len(instances)
        return Visualizer(image_rgb, self.metadata).draw_instance_predictions(instances).get_image(), grid

    def run_images(self, paths, output):
        for path in tqdm.tqdm(paths, desc="images", unit="img", disable=len(paths) < 2):
            try:
                image, note = read_image_rgb(path)
            except UnreadableImage as exc:
                _say(f"skipping {exc}")
                continue
            if note:
                _say(note)
            drawn, grid = self.detect(image)
            out_path, importance_path = _output_paths(output, path, len(paths) == 1, ".png")
            _write_rgb(out_path, drawn)
            if grid is not None:
                _write_rgb(importance_path, grid)

    def run_video(self, path, output):
        video = cv2.VideoCapture(path)
        if not video.isOpened():
            _say(f"skipping {path}: cannot open video")
            return
        fps = video.get(cv2.CAP_PROP_FPS) or 25.0
        frames = int(video.get(cv2.CAP_PROP_FRAME_COUNT)) or None
        out_path, _ = _output_paths(output, path, True, ".mp4")
        tmp = f"{out_path}.tmp{os.path.splitext(out_path)[1]}"
        writer = None
        for _ in tqdm.trange(frames or 10**9, desc="frames", unit="frame"):
            ok, frame = video.read()
            if not ok:
                break
            drawn, _ = self.detect(frame[:, :, ::-1].copy())
            if writer is None:
                fourcc = cv2.VideoWriter_fourcc(*("mp4v" if out_path.endswith(".mp4") else "MJPG"))
                writer = cv2.VideoWriter(tmp, fourcc, fps, (drawn.shape[1], drawn.shape[0]))
            writer.write(drawn[:, :, ::-1])
        video.release()
        if writer is None:
            _say(f"skipping {path}: no frame could be read")
            return
        writer.release()
        os.replace(tmp, out_path)

    def summary(self, skipped):
        per_image = self.seconds / self.images if self.images else float("nan")
        return (f"{self.images} image(s) processed, {skipped} skipped, {self.detections} detection(s), "
                f"{per_image:.3f} s/image")


@reports_input_errors
def main(argv=None):
    """Runs the demo; returns the exit status: 1 when nothing could be processed, 2 on bad input."""
    args = build_parser().parse_args(argv)
    register_user_datasets(args)
    inputs = sample_image_paths() if args.samples else args.input
    runner = DemoRunner(setup_cfg(args), args.show_importance, args.exported)
    if args.video_input:
        runner.run_video(args.video_input, args.output)
        skipped = 0 if runner.images else 1
    else:
        paths, problems = expand_inputs(inputs)
        for problem in problems:
            _say(f"skipping {problem}")
        runner.run_images(paths, args.output)
        skipped = len(problems) + len(paths) - runner.images
    _say(runner.summary(skipped) + f"; results in {args.output}")
    return 0 if runner.images else 1


if __name__ == "__main__":
    sys.exit(main())
