#!/usr/bin/env python
"""ImageNet checkpoint (official LIP-ResNet / LIP-DenseNet, torchvision ResNet / DenseNet) -> Detectron2 trunk file.

    python tools/convert_to_d2.py lip_resnet-50.pth weights/lip_resnet50_d2.pkl
    python tools/convert_to_d2.py resnet50-11ad3fa6.pth weights/torchvision_resnet50_d2.pkl
    python tools/convert_to_d2.py lip_densenet_121.pth weights/lip_densenet121_d2.pkl
    python tools/convert_to_d2.py densenet121-a639ec97.pth weights/torchvision_densenet121_d2.pkl

Reads the file without running code from it (torch.load(weights_only=True); a .pkl with a restricted
unpickler): plain, or {'state_dict': ...} with 'module.'
prefixes, as the official imagenet/main.py saves it. Every tensor but the classifier maps to exactly
one weight of build_lip_resnet_backbone / build_lip_densenet_backbone (official LIP) or
build_resnet_backbone / build_densenet_backbone (torchvision), which the written file fills exactly;
anything else stops with a one-line error. lip_lab's LIPCheckpointer also reads the original files
directly and lists the LIP weights that start new.
"""
import argparse
import sys

from lip_lab.checkpoint import convert_to_d2
from lip_lab.cli import reports_input_errors


def summary(result):
    """What a conversion wrote and the input settings its weights need."""
    settings = "\n".join(f"  {k}: {v}" for k, v in result.settings.items())
    depth_key = result.layout.architecture.depth_key
    return (
        f"Wrote {result.output}: {result.num_tensors} tensors of {result.model} ({result.layout} {result.source}), "
        f"every one matched to the Detectron2 trunk; dropped {len(result.dropped)} (classifier and BN step counters).\n"
        f"Use it with {depth_key}: {result.depth} and these input settings (the shipped configs have them):\n"
        f"{settings}"
    )


@reports_input_errors
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="ImageNet checkpoint (.pth / .pth.tar)")
    parser.add_argument("output", help="Detectron2 checkpoint to write (.pkl, or .pth)")
    args = parser.parse_args(argv)
    print(summary(convert_to_d2(args.source, args.output)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
