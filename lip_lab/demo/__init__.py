"""Inference on single images, with LIP importance maps (``tools/demo.py`` is the command line)."""
from .importance import ImportanceRecorder, render_importance_grid
from .inputs import UnreadableImage, expand_inputs, read_image_rgb
from .predictor import LIPPredictor

__all__ = [k for k in globals().keys() if not k.startswith("_")]
