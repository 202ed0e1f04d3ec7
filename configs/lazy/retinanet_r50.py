"""RetinaNet with vanilla ResNet-50-FPN, COCO 1x: configs/retinanet_r50.yaml as a LazyConfig,
the baseline twin of retinanet_lip_r50.py."""
from .common.retinanet_fpn import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.stages.depth = 50
train.init_checkpoint = "weights/torchvision_resnet50_d2.pkl"
train.output_dir = "./output/lazy/retinanet_r50"
