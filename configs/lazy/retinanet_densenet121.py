"""RetinaNet with DenseNet-121-FPN, COCO 1x: configs/retinanet_densenet121.yaml as a LazyConfig,
the baseline twin of retinanet_lip_densenet121.py."""
from .common.densenet import DENSENET121_RES5_CHANNELS, use_densenet121
from .common.retinanet_fpn import dataloader, lr_multiplier, model, optimizer, train

use_densenet121(model)
model.backbone.top_block.in_channels = DENSENET121_RES5_CHANNELS  # P6 reads res5
train.init_checkpoint = "weights/torchvision_densenet121_d2.pkl"
train.output_dir = "./output/lazy/retinanet_densenet121"
