"""The built-in LIP-Shapes datasets, registered on ``import lip_lab`` (idempotent under re-import),
and the checks that turn missing or malformed dataset files into one :class:`DatasetError` line.

``lip_shapes_*`` are the generated splits of :mod:`lip_lab.data.shapes`, created on first use (or by
:func:`prepare_datasets`) in ``$LIP_DET_DATA/shapes`` (default ``~/.cache/lip_det/shapes``). COCO is
Detectron2's own ``coco_*`` registrations under ``$DETECTRON2_DATASETS`` (default ``./datasets``).
"""
import contextlib
import json
import os
from pathlib import Path

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json

from .shapes import SHAPE_CLASSES, SHAPES_SPLITS, ensure_shapes_split, shapes_root, shapes_split_paths

__all__ = ["DatasetError", "check_dataset_files", "malformed_annotations_as_dataset_error", "prepare_datasets"]

COCO_LAYOUT = (
    "lay COCO out as $DETECTRON2_DATASETS/coco/{annotations/instances_<split>.json, <split>/*.jpg} "
    "(DETECTRON2_DATASETS defaults to ./datasets)"
)


class DatasetError(ValueError):
    """A dataset is missing or malformed; the message says where it looked and what to do."""


def _register_shapes(root):
    for name in SHAPES_SPLITS:
        if name in DatasetCatalog:
            continue
        json_file, image_root = shapes_split_paths(name, root)
        DatasetCatalog.register(
            name, lambda name=name: load_coco_json(*ensure_shapes_split(name, root), name)
        )
        # The files appear on first load (or prepare_datasets()), before any evaluator reads them.
        MetadataCatalog.get(name).set(
            json_file=str(json_file), image_root=str(image_root), thing_classes=list(SHAPE_CLASSES),
            evaluator_type="coco",
        )


def check_dataset_files(name):
    """Raises :class:`DatasetError` unless ``name`` is registered and its annotation file and image
    folder exist (LIP-Shapes splits pass: they are generated when missing)."""
    if name not in DatasetCatalog:
        known = sorted(
            n for n in DatasetCatalog.list() if n.startswith(("lip_shapes", "coco_2017")) and "panoptic" not in n
        )
        raise DatasetError(f"dataset {name!r} is not registered; built-in ones include {', '.join(known)}")
    if name in SHAPES_SPLITS:
        return
    meta = MetadataCatalog.get(name)
    layout = COCO_LAYOUT if name.startswith("coco_") else "register it with detectron2's register_coco_instances"
    for kind, path in (("annotation file", meta.get("json_file")), ("image folder", meta.get("image_root"))):
        if path is not None and not os.path.exists(path):
            raise DatasetError(f"dataset {name!r}: {kind} not found at {os.path.abspath(path)}; {layout}")


@contextlib.contextmanager
def malformed_annotations_as_dataset_error(names):
    """Turns a malformed JSON annotation file, met while loading datasets ``names``, into one
    :class:`DatasetError` line naming their files."""
    try:
        yield
    except json.JSONDecodeError as exc:
        files = ", ".join(str(MetadataCatalog.get(n).get("json_file")) for n in names)
        raise DatasetError(
            f"dataset {', '.join(map(repr, names))}: {files} is not a COCO instances file ({exc}); {COCO_LAYOUT}"
        ) from exc


def prepare_datasets(names):
    """Generates the LIP-Shapes splits among ``names`` that are not cached yet.

    Call it once in the launching process, before workers start (else each generates on first use).
    """
    for name in names:
        if name in SHAPES_SPLITS:
            ensure_shapes_split(name, Path(MetadataCatalog.get(name).json_file).parents[1])


_register_shapes(shapes_root())
