"""Faster R-CNN R50-FPN on COCO, 1x: configs/Base-RCNN-FPN.yaml as a LazyConfig (see the comments there).

Detectron2's model-zoo Mask R-CNN R50-FPN 1x without its mask branch, with this repo's choices
(coco_zoo.py) and the stem and res2 frozen.
"""
from .coco_zoo import zoo_config

dataloader, model, optimizer, lr_multiplier, train = zoo_config("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.py")

model.backbone.bottom_up.freeze_at = 2
for _key in ("mask_in_features", "mask_pooler", "mask_head"):
    model.roi_heads.pop(_key)
dataloader.train.mapper.use_instance_mask = False
