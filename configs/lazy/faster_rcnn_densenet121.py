"""Faster R-CNN with DenseNet-121-FPN, COCO 1x: configs/faster_rcnn_densenet121.yaml as a LazyConfig,
the baseline twin of faster_rcnn_lip_densenet121.py."""
from .common.densenet import use_densenet121
from .common.faster_rcnn_fpn import dataloader, lr_multiplier, model, optimizer, train

use_densenet121(model)
train.init_checkpoint = "weights/torchvision_densenet121_d2.pkl"
train.output_dir = "./output/lazy/faster_rcnn_densenet121"
