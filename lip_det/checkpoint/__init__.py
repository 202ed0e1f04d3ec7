"""Weights: ImageNet ResNet / LIP-ResNet converters and an exact, explaining checkpointer."""
from .checkpointer import LIPCheckpointer
from .convert import ConversionResult, convert_official_lip_resnet, convert_torchvision_resnet
from .errors import CheckpointError
from .files import read_state_dict, save_d2_checkpoint
from .loading import TrunkLoad, match_trunk_weights

__all__ = [
    "LIPCheckpointer",
    "CheckpointError",
    "ConversionResult",
    "convert_official_lip_resnet",
    "convert_torchvision_resnet",
    "read_state_dict",
    "save_d2_checkpoint",
    "TrunkLoad",
    "match_trunk_weights",
]
