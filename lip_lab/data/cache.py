"""Where the lab keeps the data it writes: ``$LIP_DET_DATA``, default ``~/.cache/lip_det``.

``shapes/`` holds the generated LIP-Shapes splits, ``user_coco/`` the repaired copies of users' COCO files.
"""
import os
from pathlib import Path

__all__ = ["data_root"]


def data_root():
    """``$LIP_DET_DATA``, or ``~/.cache/lip_det`` when it is unset or empty."""
    return Path(os.environ.get("LIP_DET_DATA") or Path.home() / ".cache" / "lip_det")
