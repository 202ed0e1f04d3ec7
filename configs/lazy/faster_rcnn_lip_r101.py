"""Faster R-CNN with LIP-ResNet-101-FPN, COCO 1x: configs/faster_rcnn_lip_r101.yaml as a LazyConfig.
Twin: faster_rcnn_r101.py."""
from .faster_rcnn_lip_r50 import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.stages.depth = 101
train.init_checkpoint = "weights/lip_resnet101_d2.pkl"
train.output_dir = "./output/lazy/faster_rcnn_lip_r101"
