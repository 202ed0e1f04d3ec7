"""Inference on images and videos, with LIP importance maps."""
from .importance import ImportanceRecorder, render_importance_grid
from .inputs import UnreadableImage, expand_inputs, read_image_rgb
from .predictor import LIPPredictor, WeightsError

__all__ = [k for k in globals().keys() if not k.startswith("_")]
