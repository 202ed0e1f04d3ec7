"""RetinaNet with LIP-DenseNet-121-FPN, COCO 1x: configs/retinanet_lip_densenet121.yaml as a LazyConfig.
Twin: retinanet_densenet121.py."""
from lip_det.modeling.backbone import LIPStem, make_lip_densenet_stages

from .retinanet_densenet121 import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.stem._target_ = LIPStem
model.backbone.bottom_up.stages._target_ = make_lip_densenet_stages
train.init_checkpoint = "weights/lip_densenet121_d2.pkl"
train.output_dir = "./output/lazy/retinanet_lip_densenet121"
