"""Weights: an atomic, exact checkpointer and ImageNet ResNet / LIP-ResNet converters."""
from .checkpointer import LIPCheckpointer, TrunkLoad, match_trunk_weights
from .convert import TORCHVISION_PREPROCESSING, ConversionResult, convert_to_d2
from .names import CheckpointError

__all__ = [
    "LIPCheckpointer", "CheckpointError", "TrunkLoad", "match_trunk_weights",
    "ConversionResult", "convert_to_d2", "TORCHVISION_PREPROCESSING",
]
