#!/usr/bin/env python
"""Detections and LIP importance maps on images, folders, globs or a video.

    python tools/demo.py --config-file configs/faster_rcnn_lip_r50.yaml \
        --input photos/ --output out/ --show-importance MODEL.WEIGHTS model_final.pth
"""
import sys

from lip_det.demo.cli import main

if __name__ == "__main__":
    sys.exit(main())
