"""A single-image predictor for configs with or without LIP."""
from detectron2.engine import DefaultPredictor

from ..checkpoint import LIPCheckpointer

__all__ = ["LIPPredictor"]


class LIPPredictor(DefaultPredictor):
    """Detectron2's :class:`DefaultPredictor`: ``predictor(image)`` takes a BGR uint8 array (H, W, 3) and
    returns the model's output dict for it (``instances`` in original image coordinates), converting
    to the model's ``INPUT.FORMAT`` itself. Its weights load with :class:`LIPCheckpointer`: detector
    checkpoints, or ImageNet ResNets into the trunk; an unreadable file, or a detector checkpoint that
    leaves model tensors missing or misshapen, is a one-line ``CheckpointError``; an empty
    ``MODEL.WEIGHTS`` keeps the random initialisation.
    """

    def __init__(self, cfg):
        without_weights = cfg.clone()
        without_weights.defrost()
        without_weights.MODEL.WEIGHTS = ""
        super().__init__(without_weights)  # it loads with a plain DetectionCheckpointer, which has no such errors
        self.cfg = cfg.clone()
        LIPCheckpointer(self.model, strict=True).load(cfg.MODEL.WEIGHTS)

    def resized_size(self, image):
        """(H, W) the model sees ``image`` at, before padding."""
        transform = self.aug.get_transform(image)
        return transform.new_h, transform.new_w
