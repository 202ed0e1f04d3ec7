"""RetinaNet with vanilla ResNet-101-FPN, COCO 1x: configs/retinanet_r101.yaml as a LazyConfig,
the baseline twin of retinanet_lip_r101.py."""
from .common.retinanet_fpn import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.stages.depth = 101
train.init_checkpoint = "weights/torchvision_resnet101_d2.pkl"
train.output_dir = "./output/lazy/retinanet_r101"
