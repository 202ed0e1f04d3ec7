#!/usr/bin/env python
"""Params and GFLOPs of LIP-ResNet trunks beside their vanilla twins, with ratios.

    python tools/model_complexity.py --depths 18 34 50 101 --size 224
"""
import argparse

from lip_det import get_lip_cfg
from lip_det.utils.complexity import backbone_complexity


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--depths", type=int, nargs="+", default=[18, 34, 50, 101, 152])
    parser.add_argument("--size", type=int, default=224, help="square input size")
    args = parser.parse_args()

    print(f"ResNet trunks (res2..res5, no fc) at {args.size}x{args.size}, fvcore FLOP counting")
    print(f"{'depth':>5} | {'params vanilla':>14} {'params LIP':>12} {'ratio':>6} | "
          f"{'GFLOPs vanilla':>14} {'GFLOPs LIP':>10} {'ratio':>6}")
    for depth in args.depths:
        row = {}
        for name in ("build_resnet_backbone", "build_lip_resnet_backbone"):
            cfg = get_lip_cfg(opts=["MODEL.BACKBONE.NAME", name, "MODEL.RESNETS.DEPTH", depth,
                                    "MODEL.RESNETS.RES2_OUT_CHANNELS", 64 if depth < 50 else 256])
            row[name] = backbone_complexity(cfg, args.size)
        van, lip = row["build_resnet_backbone"], row["build_lip_resnet_backbone"]
        print(f"{depth:>5} | {van['params']:>14,} {lip['params']:>12,} {lip['params'] / van['params']:>6.3f} | "
              f"{van['gflops']:>14.3f} {lip['gflops']:>10.3f} {lip['gflops'] / van['gflops']:>6.3f}")


if __name__ == "__main__":
    main()
