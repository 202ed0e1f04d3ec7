"""Turns a model-zoo FPN config's ResNet-50 trunk into torchvision's DenseNet-121.

The trunk keeps its stem (``BasicStem``, 64 channels), norm, ``out_features`` and ``freeze_at``:
``lip_det``'s DenseNet is Detectron2's ResNet container with DenseNet stages, outputs res2..res5.
"""
from detectron2.config import LazyCall as L

from lip_det.modeling.backbone import DenseNet, make_densenet_stages

DENSENET121_RES5_CHANNELS = 1024


def use_densenet121(model):
    """``model.backbone.bottom_up`` (a ResNet LazyCall) becomes DenseNet-121 with the same norm."""
    bottom_up = model.backbone.bottom_up
    bottom_up._target_ = DenseNet
    bottom_up.stages = L(make_densenet_stages)(depth=121, norm=bottom_up.stages.norm)
