#!/usr/bin/env python
"""Official LIP-ResNet ImageNet checkpoint -> Detectron2 checkpoint for LIP-ResNet configs.

    python tools/convert_lip_resnet_to_d2.py lip_resnet-50.pth weights/lip_resnet50_d2.pkl

Reads the file the official imagenet/main.py saves (plain, or {'state_dict': ...} with
'module.' prefixes) with torch.load(weights_only=True). Every tensor but the classifier
maps to exactly one weight of build_lip_resnet_backbone, which the written file fills
exactly; anything else stops with a one-line error.
"""
import sys

from lip_det.checkpoint import convert_official_lip_resnet
from lip_det.checkpoint.cli import converter_main

if __name__ == "__main__":
    sys.exit(converter_main(convert_official_lip_resnet, __doc__))
