"""Detectron2's new baseline Mask R-CNN R50-FPN with a LIP-ResNet-50: the two ``_target_`` lines
below, every other setting (SyncBN, stride_in_1x1, LSJ, schedule) as the baseline has it.
Twin: mask_rcnn_R_50_FPN_100ep_LSJ.py."""
from lip_det.modeling.backbone import LIPStem, make_lip_stages

from .mask_rcnn_R_50_FPN_100ep_LSJ import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.stem._target_ = LIPStem
model.backbone.bottom_up.stages._target_ = make_lip_stages
train.output_dir = "./output/lazy/mask_rcnn_lip_R_50_FPN_100ep_LSJ"
