"""Faster R-CNN R50-FPN on COCO, 1x: configs/Base-RCNN-FPN.yaml as a LazyConfig (see the comments there).

Detectron2's model-zoo Mask R-CNN R50-FPN 1x without its mask branch, with this repo's choices:
RGB input with torchvision's ImageNet statistics, the torchvision layout (stride in the 3x3 conv),
FrozenBN, stem and res2 frozen, evaluation only at the end, with AP by object size.
"""
from detectron2 import model_zoo

from lip_det.evaluation import SizeAPEvaluator

_zoo = model_zoo.get_config("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.py")
dataloader, model, optimizer, lr_multiplier, train = (
    _zoo[key] for key in ("dataloader", "model", "optimizer", "lr_multiplier", "train")
)

model.pixel_mean = [123.675, 116.280, 103.530]
model.pixel_std = [58.395, 57.120, 57.375]
model.input_format = dataloader.train.mapper.image_format = "RGB"
model.backbone.bottom_up.stem.norm = model.backbone.bottom_up.stages.norm = "FrozenBN"
model.backbone.bottom_up.stages.stride_in_1x1 = False
model.backbone.bottom_up.freeze_at = 2
for _key in ("mask_in_features", "mask_pooler", "mask_head"):
    model.roi_heads.pop(_key)
dataloader.train.mapper.use_instance_mask = False
dataloader.evaluator._target_ = SizeAPEvaluator

train.init_checkpoint = ""
train.eval_period = 0  # evaluate once, at the end (TEST.EVAL_PERIOD 0)
