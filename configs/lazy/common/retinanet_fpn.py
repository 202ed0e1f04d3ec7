"""RetinaNet R50-FPN on COCO, 1x: configs/Base-RetinaNet.yaml as a LazyConfig (see the comments there).

Detectron2's model-zoo RetinaNet R50-FPN 1x (lr 0.01) with this repo's choices (coco_zoo.py) and
RETINANET.SMOOTH_L1_LOSS_BETA 0.
"""
from .coco_zoo import zoo_config

dataloader, model, optimizer, lr_multiplier, train = zoo_config("COCO-Detection/retinanet_R_50_FPN_1x.py")

model.smooth_l1_beta = 0.0
