"""RetinaNet R50-FPN on COCO, 1x: configs/Base-RetinaNet.yaml as a LazyConfig (see the comments there).

Detectron2's model-zoo RetinaNet R50-FPN 1x (lr 0.01) with the preprocessing, ResNet layout, norms
and evaluation of common/faster_rcnn_fpn.py, and RETINANET.SMOOTH_L1_LOSS_BETA 0.
"""
from detectron2 import model_zoo

from lip_det.evaluation import SizeAPEvaluator

_zoo = model_zoo.get_config("COCO-Detection/retinanet_R_50_FPN_1x.py")
dataloader, model, optimizer, lr_multiplier, train = (
    _zoo[key] for key in ("dataloader", "model", "optimizer", "lr_multiplier", "train")
)

model.pixel_mean = [123.675, 116.280, 103.530]
model.pixel_std = [58.395, 57.120, 57.375]
model.input_format = dataloader.train.mapper.image_format = "RGB"
model.backbone.bottom_up.stem.norm = model.backbone.bottom_up.stages.norm = "FrozenBN"
model.backbone.bottom_up.stages.stride_in_1x1 = False
model.smooth_l1_beta = 0.0
dataloader.evaluator._target_ = SizeAPEvaluator

train.init_checkpoint = ""
train.eval_period = 0
