#!/usr/bin/env python
"""torchvision ResNet-{18,34,50,101,152} checkpoint -> Detectron2 checkpoint.

    python tools/convert_torchvision_to_d2.py resnet50-11ad3fa6.pth weights/torchvision_resnet50_d2.pkl

The file fills build_resnet_backbone exactly (the vanilla twin configs) and loads into
LIP-ResNets too: lip_det.checkpoint.LIPCheckpointer lists the LIP weights that start new.
"""
import sys

from lip_det.checkpoint import convert_torchvision_resnet
from lip_det.checkpoint.cli import converter_main

if __name__ == "__main__":
    sys.exit(converter_main(convert_torchvision_resnet, __doc__))
