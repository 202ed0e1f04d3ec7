#!/usr/bin/env python
"""Speed and memory of LIP, always beside its baselines and printed as ratios.

    python tools/benchmark.py                  # op + model level, CI-sized inputs
    python tools/benchmark.py --quick          # smaller inputs, fewer repeats
    python tools/benchmark.py --op-shape 8 256 112 112 --skip-models
    python tools/benchmark.py --amp-check 100  # bfloat16 (CPU) / float16 (CUDA) training, no inf/NaN
"""
import argparse
import sys
from pathlib import Path

import torch

from lip_det import get_lip_cfg
from lip_det.utils.benchmark import amp_check, benchmark_models, benchmark_op, format_table

DEFAULT_CONFIGS = Path(__file__).resolve().parents[1] / "configs"
MODEL_PAIRS = {
    "Faster R-CNN": ("faster_rcnn_r50.yaml", "faster_rcnn_lip_r50.yaml"),
    "RetinaNet": ("retinanet_r50.yaml", "retinanet_lip_r50.yaml"),
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small inputs and 3 repeats (smoke run)")
    parser.add_argument("--op-shape", type=int, nargs=4, metavar=("N", "C", "H", "W"))
    parser.add_argument("--dtypes", nargs="+", default=["float32"], choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"))
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--repeats", type=int, help="timed repetitions per contender (median)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--skip-op", action="store_true")
    parser.add_argument("--skip-models", action="store_true")
    parser.add_argument("--amp-check", type=int, metavar="ITERS",
                        help="only train LIP Faster R-CNN ITERS iterations under autocast")
    parser.add_argument("--configs-dir", type=Path, default=DEFAULT_CONFIGS)
    args = parser.parse_args()
    args.op_shape = args.op_shape or ([2, 32, 56, 56] if args.quick else [8, 64, 112, 112])
    args.image_size = args.image_size or ([128, 160] if args.quick else [256, 320])
    args.repeats = args.repeats or (3 if args.quick else 7)
    return args


def load_cfg(args, name, *opts):
    path = args.configs_dir / name
    if not path.is_file():
        sys.exit(f"benchmark: config {path} not found; pass --configs-dir pointing at the repo's configs/")
    return get_lip_cfg(path, ["MODEL.WEIGHTS", "", "MODEL.DEVICE", args.device, *opts])


def run_op(args):
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        for dtype in args.dtypes:
            rows = benchmark_op(args.op_shape, device, getattr(torch, dtype), args.repeats)
            print(f"\nlip2d forward+backward, {tuple(args.op_shape)} {dtype} on {device} "
                  f"(median of {args.repeats}, interleaved); saved = memory kept for backward, "
                  "extra = saved minus the op's inputs and output")
            print(format_table(
                ["op", "ms", "speed vs reference", "saved MiB", "extra MiB", "extra vs reference"],
                [[r["name"], f"{r['ms']:.1f}", f"x{r['speedup']:.2f}", f"{r['saved_mib']:.1f}",
                  f"{r['extra_mib']:.1f}", f"{r['extra_ratio']:.3f}"] for r in rows]))


def run_models(args):
    for detector, (vanilla, lip) in MODEL_PAIRS.items():
        cfgs = {
            f"{detector} R50-FPN": load_cfg(args, vanilla),
            f"{detector} LIP-R50-FPN": load_cfg(args, lip),
            f"{detector} LIP-R50-FPN, RECOMPUTE_LOGITS": load_cfg(args, lip, "MODEL.LIP.RECOMPUTE_LOGITS", True),
        }
        rows = benchmark_models(cfgs, args.image_size, args.batch_size, args.repeats)
        print(f"\n{detector}, batch {args.batch_size} x {args.image_size[0]}x{args.image_size[1]} on "
              f"{args.device} (median of {args.repeats}, interleaved); ratios vs R50-FPN; activation "
              "memory = bytes saved for backward by a training forward, parameters excluded")
        print(format_table(
            ["backbone", "train step ms", "ratio", "inference ms", "ratio", "activation MiB", "ratio",
             "params", "ratio", "backbone GFLOPs", "ratio"],
            [[name, f"{r['train_ms']:.0f}", f"x{r['train_ms_ratio']:.2f}", f"{r['infer_ms']:.0f}",
              f"x{r['infer_ms_ratio']:.2f}", f"{r['saved_mib']:.0f}", f"x{r['saved_mib_ratio']:.2f}",
              f"{r['params']:,}", f"x{r['params_ratio']:.2f}", f"{r['gflops']:.2f}", f"x{r['gflops_ratio']:.2f}"]
             for name, r in rows.items()]))


def main():
    args = parse_args()
    if args.amp_check:
        cfg = load_cfg(args, MODEL_PAIRS["Faster R-CNN"][1])
        try:
            losses = amp_check(cfg, args.amp_check, args.image_size, args.batch_size)
        except FloatingPointError as exc:
            sys.exit(f"amp check failed: {exc}")
        print(f"amp check: {len(losses)} iterations of LIP-R50-FPN Faster R-CNN under autocast on "
              f"{args.device}, all losses finite (first {losses[0]:.3f}, last {losses[-1]:.3f}, "
              f"max {max(losses):.3f})")
        return
    if not args.skip_op:
        run_op(args)
    if not args.skip_models:
        run_models(args)


if __name__ == "__main__":
    main()
