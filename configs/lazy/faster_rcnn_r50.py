"""Faster R-CNN with vanilla ResNet-50-FPN, COCO 1x: configs/faster_rcnn_r50.yaml as a LazyConfig,
the baseline twin of faster_rcnn_lip_r50.py."""
from .common.faster_rcnn_fpn import dataloader, lr_multiplier, model, optimizer, train

train.init_checkpoint = "weights/torchvision_resnet50_d2.pkl"
train.output_dir = "./output/lazy/faster_rcnn_r50"
