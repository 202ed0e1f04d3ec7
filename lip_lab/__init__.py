"""lip_lab: the instruments around the lip_det plugin.

The command-line tools' shared code (:mod:`lip_lab.cli`), the trainer and the LazyConfig runner,
the checkpointer and the ImageNet-weight converters, the datasets (LIP-Shapes, user COCO files),
AP-by-size evaluation and reports, multi-seed studies, the demo and benchmark support. It imports
``lip_det``, never the reverse. ``import lip_lab`` registers the LIP backbones (``lip_det``) and
the built-in LIP-Shapes datasets.
"""
import lip_det  # noqa: F401  (registration: backbones)

from . import data as _  # noqa: F401  (registration: LIP-Shapes datasets)

__version__ = lip_det.__version__
