"""Idempotent registration into Detectron2's ``BACKBONE_REGISTRY``."""
from detectron2.modeling import BACKBONE_REGISTRY

__all__ = ["register_backbone"]


def register_backbone(builder):
    """Registers ``builder`` under its own name, once.

    Re-importing (``importlib.reload``, spawn-started workers that import twice) finds the
    name taken by an earlier copy of the same builder and keeps it; a builder of the same
    name from another module is a real clash and raises.
    """
    name = builder.__name__
    if name in BACKBONE_REGISTRY:
        existing = BACKBONE_REGISTRY.get(name)
        if existing.__module__ != builder.__module__:
            raise KeyError(
                f"BACKBONE_REGISTRY already has {name!r} from {existing.__module__}; "
                f"lip_det cannot register its own"
            )
        return existing
    BACKBONE_REGISTRY.register(builder)
    return builder
