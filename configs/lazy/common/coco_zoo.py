"""What the COCO LazyConfigs here change in a Detectron2 model-zoo config (configs/Base-RCNN-FPN.yaml's
choices): RGB input with torchvision's ImageNet statistics, the torchvision ResNet layout (stride in
the 3x3 conv), FrozenBN, no weights by default, evaluation once at the end with AP by object size.
"""
from detectron2 import model_zoo

from lip_lab.evaluation import SizeAPEvaluator


def zoo_config(name):
    """``(dataloader, model, optimizer, lr_multiplier, train)`` of the model-zoo LazyConfig ``name``
    with those choices applied."""
    zoo = model_zoo.get_config(name)
    dataloader, model, train = zoo.dataloader, zoo.model, zoo.train
    model.pixel_mean = [123.675, 116.280, 103.530]
    model.pixel_std = [58.395, 57.120, 57.375]
    model.input_format = dataloader.train.mapper.image_format = "RGB"
    model.backbone.bottom_up.stem.norm = model.backbone.bottom_up.stages.norm = "FrozenBN"
    model.backbone.bottom_up.stages.stride_in_1x1 = False
    evaluate_by_size(dataloader)
    train.init_checkpoint = ""
    train.eval_period = 0  # evaluate once, at the end (TEST.EVAL_PERIOD 0)
    return dataloader, model, zoo.optimizer, zoo.lr_multiplier, train


def evaluate_by_size(dataloader):
    """``dataloader.evaluator`` (a ``COCOEvaluator``) becomes a ``SizeAPEvaluator`` with the same arguments:
    Detectron2's numbers plus AP by object size, written to ``<train.output_dir>/inference/<dataset>``."""
    dataloader.evaluator._target_ = SizeAPEvaluator
    dataloader.evaluator.output_dir = "${train.output_dir}/inference/${..test.dataset.names}"
