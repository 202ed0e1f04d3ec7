"""Registers the built-in datasets on ``import lip_det`` (idempotent under re-import).

- ``lip_shapes_*``: the generated LIP-Shapes splits (see :mod:`lip_det.data.shapes`),
  created on first use in ``$LIP_DET_DATA`` (default ``~/.cache/lip_det/shapes``).
- ``coco_*``: Detectron2 registers them under ``$DETECTRON2_DATASETS`` (default
  ``./datasets``); here their loaders are wrapped so that missing or malformed files give
  one :class:`DatasetError` line saying where they were looked for and how COCO is laid out.
"""
import json
import os
from pathlib import Path

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json

from .shapes import SHAPE_CLASSES, SHAPES_SPLITS, ensure_shapes_split, shapes_root, shapes_split_paths

__all__ = ["DatasetError", "check_dataset_files", "prepare_datasets"]

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
    """Raises :class:`DatasetError` unless the annotation file and image folder of ``name`` exist."""
    if name not in DatasetCatalog:
        known = sorted(n for n in DatasetCatalog.list() if n.startswith(("lip_shapes", "coco_2017")) and "panoptic" not in n)
        raise DatasetError(f"dataset {name!r} is not registered; built-in ones include {', '.join(known)}")
    meta = MetadataCatalog.get(name)
    json_file, image_root = meta.get("json_file"), meta.get("image_root")
    layout = COCO_LAYOUT if name.startswith("coco_") else "register it with detectron2's register_coco_instances"
    for kind, path in (("annotation file", json_file), ("image folder", image_root)):
        if path is not None and not os.path.exists(path):
            raise DatasetError(f"dataset {name!r}: {kind} not found at {os.path.abspath(path)}; {layout}")


def _checked_coco_loader(name, load):
    def checked():
        check_dataset_files(name)
        try:
            return load()
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            path = MetadataCatalog.get(name).json_file
            raise DatasetError(
                f"dataset {name!r}: {path} is not a COCO instances file ({type(exc).__name__}: {exc}); {COCO_LAYOUT}"
            ) from exc

    checked.lip_det_checked = True
    return checked


def _wrap_coco():
    for name in DatasetCatalog.list():
        load = DatasetCatalog[name]  # the registered function (DatasetCatalog.get would call it)
        if name.startswith("coco_") and "panoptic" not in name and not getattr(load, "lip_det_checked", False):
            DatasetCatalog.remove(name)
            DatasetCatalog.register(name, _checked_coco_loader(name, load))


def prepare_datasets(names):
    """Generates the built-in splits among ``names`` and checks the files of the others.

    Call it once in the launching process, before workers start.
    """
    for name in names:
        if name in SHAPES_SPLITS:
            ensure_shapes_split(name, Path(MetadataCatalog.get(name).json_file).parents[1])
        else:
            check_dataset_files(name)


_register_shapes(shapes_root())
_wrap_coco()
