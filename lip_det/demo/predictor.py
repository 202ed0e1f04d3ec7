"""A single-image predictor for configs with or without LIP."""
import numpy as np
import torch
from detectron2.data import transforms as T
from detectron2.modeling import build_model

from ..checkpoint import LIPCheckpointer

__all__ = ["LIPPredictor"]


class LIPPredictor:
    """Builds the model of ``cfg``, loads ``cfg.MODEL.WEIGHTS`` and predicts one image at a time.

    ``predictor(image)`` takes an RGB uint8 array (H, W, 3) and returns Detectron2's output
    dict for it (``instances`` in original image coordinates). Weights load with
    :class:`LIPCheckpointer` (detector checkpoints, or ImageNet ResNets into the trunk; an
    unreadable file is a one-line ``CheckpointError``); an empty MODEL.WEIGHTS keeps the random
    initialisation.
    """

    def __init__(self, cfg):
        self.cfg = cfg.clone()
        self.model = build_model(self.cfg).eval()
        LIPCheckpointer(self.model).load(cfg.MODEL.WEIGHTS)
        self.resize = T.ResizeShortestEdge(
            [cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MIN_SIZE_TEST], cfg.INPUT.MAX_SIZE_TEST
        )
        self.input_format = cfg.INPUT.FORMAT

    def resized_size(self, image_rgb):
        """(H, W) the model sees ``image_rgb`` at, before padding."""
        transform = self.resize.get_transform(image_rgb)
        return transform.new_h, transform.new_w

    def preprocess(self, image_rgb):
        """RGB (H, W, 3) uint8 -> the model's input dict (resized CHW float tensor)."""
        height, width = image_rgb.shape[:2]
        image = image_rgb if self.input_format == "RGB" else image_rgb[:, :, ::-1]
        image = self.resize.get_transform(image).apply_image(image)
        tensor = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)).astype("float32"))
        return {"image": tensor.to(self.cfg.MODEL.DEVICE), "height": height, "width": width}

    def __call__(self, image_rgb):
        with torch.no_grad():
            return self.model([self.preprocess(image_rgb)])[0]
