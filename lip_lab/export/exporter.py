"""A Detectron2 model as a traceable module with named outputs, saved as TorchScript or ONNX.

What is exported (Detectron2's deploy conventions, ``tools/deploy/export_model.py``):
- part "model": the detector on one image, (3, H, W) float in ``INPUT.FORMAT``, already resized
  to the test size; pixel normalisation and padding are inside. Outputs are the fields of its
  ``Instances`` (``pred_boxes``, ``scores``, ``pred_classes``, R-CNN masks as 28 x 28 ROI
  probabilities ``pred_masks``) and ``image_size``, in the resized image's coordinates: the
  final resize to the original image and the mask pasting stay outside
  (:class:`~.runtime.ExportedPredictor` does them).
- part "backbone": backbone + FPN on the same input; one output per feature map, by name.
H and W are dynamic in every exported file.
"""
import json
import os

import torch
import torch.nn.functional as F
from detectron2.export import TracingAdapter
from detectron2.export.flatten import DictSchema, InstancesSchema, ListSchema
from detectron2.modeling import GeneralizedRCNN
from detectron2.structures import ImageList
from torch import nn

from ..utils.atomic import atomic_path

__all__ = ["EXPORT_FORMATS", "FILE_SUFFIXES", "EXPORT_PARTS", "ONNX_EXPORTERS", "ONNX_OPSET", "OUTPUT_NAMES_FILE", "ExportError",
           "traceable", "export"]

EXPORT_FORMATS = ("onnx", "torchscript")
FILE_SUFFIXES = {"onnx": ".onnx", "torchscript": ".ts"}
"""The file suffix of each format: :class:`~.runtime.ExportedModel` reads the format from it."""
EXPORT_PARTS = ("model", "backbone")
ONNX_EXPORTERS = ("torchscript", "dynamo")
"""``torch.onnx.export``'s two exporters: ``dynamo=False`` (from a ``torch.jit.trace``) and
``dynamo=True`` (from ``torch.export``, the default of current PyTorch)."""

ONNX_OPSET = 18
OUTPUT_NAMES_FILE = "output_names.json"
"""Extra file of a saved TorchScript model: its outputs' names (ONNX files name them themselves)."""


class ExportError(RuntimeError):
    """An export that cannot be done; the message names the reason and the way out."""


class BackboneAdapter(nn.Module):
    """``forward(image)``: (3, H, W) image -> the model's backbone features (1, C, H / s, W / s) as a
    tuple, normalised and padded as the model's ``preprocess_image`` does."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.names = tuple(model.backbone.output_shape())

    def forward(self, image):
        normalized = (image.to(self.model.pixel_mean.device) - self.model.pixel_mean) / self.model.pixel_std
        backbone = self.model.backbone
        if torch.compiler.is_exporting():  # ImageList would turn H and W into constants under torch.export
            stride = max(backbone.size_divisibility, 1)
            padded = F.pad(normalized, (0, -normalized.shape[2] % stride, 0, -normalized.shape[1] % stride))[None]
        else:
            padded = ImageList.from_tensors([normalized], backbone.size_divisibility,
                                            padding_constraints=backbone.padding_constraints).tensor
        features = backbone(padded)
        return tuple(features[name] for name in self.names)


def _rcnn_inference(model, inputs):
    """R-CNN inference without the final resize, so that masks stay ROI masks."""
    return [{"instances": model.inference(inputs, do_postprocess=False)[0]}]


def _instance_output_names(schema):
    """Output names of a :class:`TracingAdapter` over one image's ``[{"instances": ...}]``."""
    if (isinstance(schema, ListSchema) and len(schema.schemas) == 1 and isinstance(schema.schemas[0], DictSchema)
            and schema.schemas[0].keys == ["instances"] and isinstance(schema.schemas[0].schemas[0], InstancesSchema)):
        return list(schema.schemas[0].schemas[0].keys) + ["image_size"]
    raise ExportError(f"the model returns {schema}, not one image's instances; export --part backbone instead")


def traceable(model, image, part="model"):
    """A module ``f(image) -> tuple of tensors`` of ``part`` of ``model`` (eval mode), with its output names.

    Args:
        model: a Detectron2 meta-architecture (GeneralizedRCNN, RetinaNet, ...).
        image: (3, H, W) float tensor in the model's input format, resized to the test size; the
            outputs' structure is read from one run on it.
        part: one of :data:`EXPORT_PARTS`.
    Returns:
        (module, output names).
    """
    model.eval()
    if part == "backbone":
        return BackboneAdapter(model).eval(), list(model.backbone.output_shape())
    inference = _rcnn_inference if isinstance(model, GeneralizedRCNN) else None
    adapter = TracingAdapter(model, [{"image": image}], inference).eval()
    with torch.no_grad():
        adapter(image)  # builds adapter.outputs_schema
    return adapter, _instance_output_names(adapter.outputs_schema)


def export(module, image, output_names, path, fmt, exporter="torchscript"):
    """Traces ``module`` on ``image`` (3, H, W) and writes it to ``path`` (atomically) as ``fmt``.

    ONNX files name their input ``image`` (H and W dynamic) and their outputs ``output_names``;
    TorchScript files carry the names in :data:`OUTPUT_NAMES_FILE`. ``exporter`` picks the ONNX
    exporter (:data:`ONNX_EXPORTERS`).
    """
    with torch.no_grad(), atomic_path(path) as tmp:
        if fmt == "torchscript":
            traced = torch.jit.trace(module, (image,), check_trace=False)
            torch.jit.save(traced, tmp, _extra_files={OUTPUT_NAMES_FILE: json.dumps(output_names)})
        elif exporter == "dynamo":
            _export_onnx_dynamo(module, image, output_names, tmp)
        else:
            torch.onnx.export(module, (image,), tmp, dynamo=False, opset_version=ONNX_OPSET, input_names=["image"],
                              output_names=output_names, dynamic_axes={"image": {1: "height", 2: "width"}})


def _export_onnx_dynamo(module, image, output_names, path):
    size = torch.export.Dim.DYNAMIC  # fails, rather than silently fixing H or W, if the model specializes them
    try:
        program = torch.onnx.export(module, (image,), dynamo=True, opset_version=ONNX_OPSET, input_names=["image"],
                                    output_names=output_names, dynamic_shapes=({1: size, 2: size},), verbose=False)
    except Exception as exc:  # torch.export's errors have no common base; name the first line of the cause
        cause = exc.__cause__ or exc
        first_line = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        raise ExportError(f"the dynamo ONNX exporter failed ({type(cause).__name__}: {first_line}); "
                          "use --onnx-exporter torchscript, or --part backbone") from exc
    program.save(os.fspath(path))
