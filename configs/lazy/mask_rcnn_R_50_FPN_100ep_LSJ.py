"""Detectron2's new baseline Mask R-CNN R50-FPN (100 epochs of large-scale jitter, SyncBN, from
scratch, AMP), as its model zoo ships it: the baseline twin of mask_rcnn_lip_R_50_FPN_100ep_LSJ.py.
Evaluated with AP by object size (bbox and segm) beside Detectron2's numbers."""
from detectron2 import model_zoo

from .common.coco_zoo import evaluate_by_size

_zoo = model_zoo.get_config("new_baselines/mask_rcnn_R_50_FPN_100ep_LSJ.py")
dataloader, model, optimizer, lr_multiplier, train = (
    _zoo[key] for key in ("dataloader", "model", "optimizer", "lr_multiplier", "train")
)
evaluate_by_size(dataloader)
train.output_dir = "./output/lazy/mask_rcnn_R_50_FPN_100ep_LSJ"
