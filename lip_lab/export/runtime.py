"""Exported models run back: onnxruntime for ``.onnx`` files, TorchScript for ``.ts`` files."""
import json
import os

import numpy as np
import torch
from detectron2.data import transforms as T
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Boxes, Instances

from ..errors import UsageError
from .exporter import FILE_SUFFIXES, OUTPUT_NAMES_FILE

__all__ = ["ExportedModel", "instances_from_outputs", "model_input", "ExportedPredictor"]


class ExportedModel:
    """A file written by :func:`~.exporter.export`: ``model(image)`` takes a (3, H, W) float tensor and
    returns ``{output name: tensor}`` (CPU), as the traced module would."""

    def __init__(self, path):
        if not os.path.isfile(path):
            raise UsageError(f"exported model not found: {path}; write one with tools/export_model.py")
        self.path = path
        if path.endswith(FILE_SUFFIXES["onnx"]):
            import onnxruntime

            self.session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
            self.names = [output.name for output in self.session.get_outputs()]
        elif path.endswith(FILE_SUFFIXES["torchscript"]):
            extra = {OUTPUT_NAMES_FILE: ""}
            self.module = torch.jit.load(path, map_location="cpu", _extra_files=extra)
            self.names = json.loads(extra[OUTPUT_NAMES_FILE])
        else:
            raise UsageError(f"{path} is neither .onnx nor .ts; pass a file written by tools/export_model.py")

    def __call__(self, image):
        if hasattr(self, "session"):
            values = [torch.from_numpy(v) for v in self.session.run(None, {"image": image.cpu().numpy()})]
        else:
            with torch.no_grad():
                values = self.module(image.cpu())
        return dict(zip(self.names, values))


def instances_from_outputs(outputs):
    """An exported detector's outputs (``{field: tensor, "image_size": (2,)}``) as ``Instances``."""
    fields = {name: Boxes(value) if name == "pred_boxes" else value
              for name, value in outputs.items() if name != "image_size"}
    return Instances(tuple(int(v) for v in outputs["image_size"]), **fields)


def model_input(image_bgr, aug, input_format):
    """(3, H, W) float tensor as a predictor feeds its model: ``image_bgr`` (H, W, 3) uint8 in
    ``input_format``, resized by ``aug``."""
    image = image_bgr[:, :, ::-1] if input_format == "RGB" else image_bgr
    resized = aug.get_transform(image).apply_image(image)
    return torch.as_tensor(np.ascontiguousarray(resized.astype("float32").transpose(2, 0, 1)))


class ExportedPredictor:
    """:class:`~lip_lab.demo.LIPPredictor` for an exported detector: ``predictor(image)`` takes a BGR
    uint8 array (H, W, 3), resizes it as the config's test size, runs the exported file and returns
    ``{"instances": ...}`` in original image coordinates (final resize and mask pasting here, as
    Detectron2's deploy example does them)."""

    def __init__(self, cfg, path):
        self.model = ExportedModel(path)
        if "pred_boxes" not in self.model.names:
            raise UsageError(f"{path} has outputs {self.model.names}, not a detector's; export --part model")
        self.aug = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)
        self.input_format = cfg.INPUT.FORMAT

    def __call__(self, original_image):
        height, width = original_image.shape[:2]
        instances = instances_from_outputs(self.model(model_input(original_image, self.aug, self.input_format)))
        return {"instances": detector_postprocess(instances, height, width)}
