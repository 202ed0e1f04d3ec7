"""LIP-ResNet-18-FPN Faster R-CNN on LIP-Shapes, CPU, from scratch: configs/quick/faster_rcnn_lip_r18_shapes.yaml
as a LazyConfig. Twin: faster_rcnn_r18_shapes.py.

    python tools/lazyconfig_train_net.py --config-file configs/lazy/quick/faster_rcnn_lip_r18_shapes.py
"""
from lip_det.modeling.backbone import LIPStem, make_lip_stages

from .faster_rcnn_r18_shapes import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.stem._target_ = LIPStem
model.backbone.bottom_up.stages._target_ = make_lip_stages
# No InstanceNorm in the logit modules from scratch (see the YAML twin for why and what it measured).
model.backbone.bottom_up.stem.logit_norm = model.backbone.bottom_up.stages.logit_norm = ""
train.output_dir = "./output/lazy/quick/faster_rcnn_lip_r18_shapes"
