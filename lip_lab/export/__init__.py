"""Deployment: LIP detectors traced to TorchScript and ONNX, and run back from those files
(``tools/export_model.py`` and ``tools/demo.py --exported`` are the command lines)."""
from .compare import compare_outputs, format_comparison
from .exporter import EXPORT_FORMATS, EXPORT_PARTS, FILE_SUFFIXES, ONNX_EXPORTERS, ExportError, export, traceable
from .runtime import ExportedModel, ExportedPredictor, instances_from_outputs, model_input

__all__ = [k for k in globals().keys() if not k.startswith("_")]
