"""Weights: an atomic, exact checkpointer and ImageNet ResNet / LIP-ResNet / DenseNet / LIP-DenseNet converters."""
from .checkpointer import LIPCheckpointer, TrunkLoad, match_trunk_weights
from .convert import IMAGENET_INPUT, TORCHVISION_PREPROCESSING, ConversionResult, convert_to_d2
from .names import CheckpointError

__all__ = [
    "LIPCheckpointer", "CheckpointError", "TrunkLoad", "match_trunk_weights",
    "ConversionResult", "convert_to_d2", "IMAGENET_INPUT", "TORCHVISION_PREPROCESSING",
]
