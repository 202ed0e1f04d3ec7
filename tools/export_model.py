#!/usr/bin/env python
"""Export a detector (or its backbone) to ONNX or TorchScript, then check the file against PyTorch.

    python tools/export_model.py --config-file configs/faster_rcnn_lip_r50.yaml --format onnx \\
        --output exported/ --sample-image photo.jpg MODEL.WEIGHTS model_final.pth

Writes <output>/model.onnx (or model.ts; backbone.* with --part backbone), runs it on the sample
image with onnxruntime (TorchScript: torch.jit.load) and prints, per output, the largest difference
from PyTorch, the detections above the score threshold in both, and both inference times.
Exit status 1 when a difference exceeds --tolerance. Config overrides (KEY VALUE ...) come last.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import torch
from detectron2.data import DatasetCatalog

from lip_lab.cli import UsageError, add_register_coco_argument, check_weights, load_config, register_user_datasets
from lip_lab.cli import reports_input_errors
from lip_lab.data import prepare_datasets
from lip_lab.demo import LIPPredictor, UnreadableImage, read_image_rgb
from lip_lab.export import EXPORT_FORMATS, EXPORT_PARTS, FILE_SUFFIXES, ONNX_EXPORTERS, ExportedModel, ExportError
from lip_lab.export import compare_outputs, export, format_comparison, model_input, traceable

def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--export-method", choices=["tracing"], default="tracing",
                        help="how the model is captured (Detectron2's TracingAdapter)")
    parser.add_argument("--format", choices=EXPORT_FORMATS, default="onnx")
    parser.add_argument("--onnx-exporter", choices=ONNX_EXPORTERS, default="torchscript",
                        help="torch.onnx.export(dynamo=False) or (dynamo=True); whole detectors need torchscript")
    parser.add_argument("--part", choices=EXPORT_PARTS, default="model", help="the detector, or backbone + FPN only")
    parser.add_argument("--output", default="export_output", help="output folder (default: export_output/)")
    parser.add_argument("--sample-image", metavar="FILE",
                        help="image to trace and check on (default: the first image of DATASETS.TEST)")
    parser.add_argument("--tolerance", type=float, default=1e-4,
                        help="largest relative difference from PyTorch accepted per output (default 1e-4)")
    parser.add_argument("--score-threshold", type=float, default=0.5,
                        help="detections counted in both models from this score (default 0.5)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each model (default 3)")
    add_register_coco_argument(parser)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ..., last")
    return parser


def setup_cfg(args):
    opts = list(args.opts)
    if "MODEL.DEVICE" not in opts[::2]:
        opts += ["MODEL.DEVICE", "cpu"]  # exported files are traced on CPU and run by onnxruntime's CPU provider
    cfg = load_config(args.config_file, opts)
    check_weights(cfg)
    cfg.freeze()
    return cfg


def sample_image_bgr(cfg, path):
    """(H, W, 3) uint8 BGR: ``path``, or the first image of ``cfg.DATASETS.TEST``."""
    if path is None:
        if not cfg.DATASETS.TEST:
            raise UsageError("DATASETS.TEST is empty; pass --sample-image FILE")
        prepare_datasets(cfg.DATASETS.TEST[:1])
        path = DatasetCatalog.get(cfg.DATASETS.TEST[0])[0]["file_name"]
    try:
        image, _ = read_image_rgb(path)
    except UnreadableImage as exc:
        raise UsageError(f"--sample-image: {exc}") from None
    return np.ascontiguousarray(image[:, :, ::-1])


def median_seconds(run, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def check_writable(folder):
    try:
        os.makedirs(folder, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as exc:
        raise UsageError(f"cannot write to --output {folder}: {exc.strerror}; pass a writable folder") from None


@reports_input_errors
def main(argv=None):
    """Exports and checks; returns 0, 1 when the exported model differs from PyTorch, 2 on bad input."""
    args = build_parser().parse_args(argv)
    register_user_datasets(args)
    cfg = setup_cfg(args)
    check_writable(args.output)
    predictor = LIPPredictor(cfg)
    image = model_input(sample_image_bgr(cfg, args.sample_image), predictor.aug, predictor.input_format)
    module, names = traceable(predictor.model, image, args.part)
    path = os.path.join(args.output, args.part + FILE_SUFFIXES[args.format])
    try:
        export(module, image, names, path, args.format, args.onnx_exporter)
    except ExportError as exc:
        raise UsageError(str(exc)) from None
    print(f"export_model: wrote {path} ({args.format}"
          f"{', ' + args.onnx_exporter + ' exporter' if args.format == 'onnx' else ''}); outputs {', '.join(names)}")

    exported = ExportedModel(path)
    with torch.no_grad():
        reference = dict(zip(names, module(image)))
    report = compare_outputs(reference, exported(image), args.score_threshold)
    for line in format_comparison(report):
        print(f"  {line}")
    with torch.no_grad():
        seconds = [median_seconds(lambda: run(image), args.repeats) for run in (module, exported)]
    print(f"  inference on CPU, {tuple(image.shape[1:])} image, median of {args.repeats}: PyTorch "
          f"{1000 * seconds[0]:.1f} ms, exported {1000 * seconds[1]:.1f} ms (x{seconds[1] / seconds[0]:.2f})")
    failed = [name for name, value in report.items()
              if name != "detections" and (value is None or value[1] > args.tolerance)]
    if "detections" in report:
        kept, kept_exported, same_classes = report["detections"]
        if kept != kept_exported or not same_classes:
            failed.append("detections")
    if failed:
        print(f"export_model: {', '.join(failed)} differ from PyTorch beyond --tolerance {args.tolerance:g}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
