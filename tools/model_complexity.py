#!/usr/bin/env python
"""Params and GFLOPs of LIP-ResNet / LIP-DenseNet trunks beside their vanilla twins, with ratios.

    python tools/model_complexity.py --depths 18 34 50 101 --size 224
    python tools/model_complexity.py --depths 50 --pooling lip softpool max blur   # one row per MODEL.LIP.POOLING
    python tools/model_complexity.py --arch densenet --depths 121
"""
import argparse

from lip_det import get_lip_cfg
from lip_det.layers import POOLINGS
from lip_lab.utils.complexity import backbone_complexity

ARCHS = {  # --arch -> (LIP builder, vanilla builder, default depths)
    "resnet": ("build_lip_resnet_backbone", "build_resnet_backbone", [18, 34, 50, 101, 152]),
    "densenet": ("build_lip_densenet_backbone", "build_densenet_backbone", [121, 161, 169, 201]),
}


def trunk_complexity(arch, depth, size, lip=True, pooling="lip"):
    builder = ARCHS[arch][0 if lip else 1]
    if arch == "densenet":
        depth_opts = ["MODEL.DENSENET.DEPTH", depth]
    else:
        depth_opts = ["MODEL.RESNETS.DEPTH", depth, "MODEL.RESNETS.RES2_OUT_CHANNELS", 64 if depth < 50 else 256]
    cfg = get_lip_cfg(opts=["MODEL.BACKBONE.NAME", builder, *depth_opts, "MODEL.LIP.POOLING", pooling])
    return backbone_complexity(cfg, size)


def print_lip_vs_vanilla(arch, depths, size):
    print(f"{'depth':>5} | {'params vanilla':>14} {'params LIP':>12} {'ratio':>6} | "
          f"{'GFLOPs vanilla':>14} {'GFLOPs LIP':>10} {'ratio':>6}")
    for depth in depths:
        van = trunk_complexity(arch, depth, size, lip=False)
        lip = trunk_complexity(arch, depth, size)
        print(f"{depth:>5} | {van['params']:>14,} {lip['params']:>12,} {lip['params'] / van['params']:>6.3f} | "
              f"{van['gflops']:>14.3f} {lip['gflops']:>10.3f} {lip['gflops'] / van['gflops']:>6.3f}")


def print_per_pooling(arch, depths, size, poolings):
    print(f"{'depth':>5} {'pooling':>10} | {'params':>12} {'vs vanilla':>10} | {'GFLOPs':>8} {'vs vanilla':>10}")
    for depth in depths:
        van = trunk_complexity(arch, depth, size, lip=False)
        print(f"{depth:>5} {'vanilla':>10} | {van['params']:>12,} {1:>10.3f} | {van['gflops']:>8.3f} {1:>10.3f}")
        for pooling in poolings:
            row = trunk_complexity(arch, depth, size, pooling=pooling)
            print(f"{depth:>5} {pooling:>10} | {row['params']:>12,} {row['params'] / van['params']:>10.3f} | "
                  f"{row['gflops']:>8.3f} {row['gflops'] / van['gflops']:>10.3f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--arch", choices=ARCHS, default="resnet")
    parser.add_argument("--depths", type=int, nargs="+", help="default: every depth of --arch")
    parser.add_argument("--size", type=int, default=224, help="square input size")
    parser.add_argument("--pooling", nargs="+", choices=POOLINGS, metavar="NAME",
                        help=f"one row per MODEL.LIP.POOLING operator (any of {', '.join(POOLINGS)})")
    args = parser.parse_args()

    depths = args.depths or ARCHS[args.arch][2]
    name = "ResNet" if args.arch == "resnet" else "DenseNet"
    print(f"{name} trunks (res2..res5, no classifier) at {args.size}x{args.size}, fvcore FLOP counting")
    if args.pooling:
        print_per_pooling(args.arch, depths, args.size, args.pooling)
    else:
        print_lip_vs_vanilla(args.arch, depths, args.size)


if __name__ == "__main__":
    main()
