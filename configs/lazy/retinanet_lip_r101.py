"""RetinaNet with LIP-ResNet-101-FPN, COCO 1x: configs/retinanet_lip_r101.yaml as a LazyConfig.
Twin: retinanet_r101.py."""
from lip_det.modeling.backbone import LIPStem, make_lip_stages

from .retinanet_r101 import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.stem._target_ = LIPStem
model.backbone.bottom_up.stages._target_ = make_lip_stages
train.init_checkpoint = "weights/lip_resnet101_d2.pkl"
train.output_dir = "./output/lazy/retinanet_lip_r101"
