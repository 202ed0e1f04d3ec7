"""Detectron2 models with LIP."""
from .backbone import *  # noqa: F401,F403  (registration)
