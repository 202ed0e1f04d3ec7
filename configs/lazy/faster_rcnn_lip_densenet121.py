"""Faster R-CNN with LIP-DenseNet-121-FPN, COCO 1x: configs/faster_rcnn_lip_densenet121.yaml as a LazyConfig.
Twin: faster_rcnn_densenet121.py; the two ``_target_`` lines are the whole difference in the model."""
from lip_det.modeling.backbone import LIPStem, make_lip_densenet_stages

from .faster_rcnn_densenet121 import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.stem._target_ = LIPStem  # keeps the stem's and stages' arguments
model.backbone.bottom_up.stages._target_ = make_lip_densenet_stages
train.init_checkpoint = "weights/lip_densenet121_d2.pkl"
train.output_dir = "./output/lazy/faster_rcnn_lip_densenet121"
