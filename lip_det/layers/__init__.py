"""LIP building blocks: the functional op, logit modules and the LIP module."""
from .lip import LIP, LOGIT_MODULES, LogitSpec, run_logit_module
from .lip2d import LIP_IMPLS, lip2d, lip2d_reference
from .logit import LOGIT_NORMS, ConvLogit, SharedLogitTrunk, SoftGate, get_logit_norm

__all__ = [k for k in globals().keys() if not k.startswith("_")]
