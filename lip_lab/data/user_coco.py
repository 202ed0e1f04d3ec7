"""A user's own COCO instances file, checked once and registered like ``register_coco_instances``.

:func:`prepare_user_coco` runs in the launching process: it reads the file, stops with one
:class:`DatasetError` line on what cannot be used (missing or malformed JSON, a listed image
absent from disk) and repairs what can, each repair logged on one line: zero-area and
out-of-image boxes are dropped, annotation ids starting at 0 are shifted (COCOeval reads id 0
as "unmatched"), categories without any annotation are reported. A repaired copy is written
to a cache folder; the user's file is never modified. :func:`register_user_coco` then
registers the (possibly repaired) file in every process.
"""
import hashlib
import json
import logging
import os

from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from omegaconf import OmegaConf

from ..utils.atomic import atomic_open
from .builtin import DatasetError
from .cache import data_root

__all__ = ["prepare_user_coco", "register_user_coco", "model_class_count", "check_num_classes", "OUT_OF_IMAGE_TOLERANCE"]

logger = logging.getLogger(__name__)

OUT_OF_IMAGE_TOLERANCE = 1.0
"""Pixels a box may extend past the image border (rounding) before it counts as out of image."""


def _cache_dir():
    return data_root() / "user_coco"


def _read(name, json_file):
    where = f"--register-coco {name}"
    try:
        with open(json_file, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise DatasetError(f"{where}: annotation file not found: {os.path.abspath(json_file)}") from None
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{where}: {json_file} is not valid JSON ({exc}); fix or re-export the file") from None
    keys = ("images", "annotations", "categories")
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in keys):
        raise DatasetError(f"{where}: {json_file} is not a COCO instances file: it needs the lists {', '.join(keys)}")
    return data


def _check_images(name, data, json_file, image_root):
    if not os.path.isdir(image_root):
        raise DatasetError(f"--register-coco {name}: image folder not found: {os.path.abspath(image_root)}")
    for image in data["images"]:
        if not all(k in image for k in ("id", "file_name", "width", "height")):
            raise DatasetError(f"--register-coco {name}: an image entry of {json_file} lacks id, file_name, width or height: {image}")
    missing = [im["file_name"] for im in data["images"] if not os.path.isfile(os.path.join(image_root, im["file_name"]))]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DatasetError(
            f"--register-coco {name}: image {missing[0]!r}{more} is listed in {json_file} but not in {image_root}"
        )


def _usable(ann, image):
    """False for a box of zero area or one reaching outside its image (beyond the tolerance)."""
    x, y, w, h = ann["bbox"]
    tol = OUT_OF_IMAGE_TOLERANCE
    inside = x >= -tol and y >= -tol and x + w <= image["width"] + tol and y + h <= image["height"] + tol
    return w > 0 and h > 0 and inside


def _repair(name, data):
    """Drops unusable boxes, shifts 0-based annotation ids; returns True if anything changed."""
    images = {im["id"]: im for im in data["images"]}
    cat_ids = {c["id"] for c in data["categories"]}
    annotations = data["annotations"]
    kept = [a for a in annotations if a.get("image_id") in images and a.get("category_id") in cat_ids
            and len(a.get("bbox", ())) == 4 and _usable(a, images[a["image_id"]])]
    changed = len(kept) != len(annotations)
    if changed:
        logger.warning(
            f"--register-coco {name}: dropped {len(annotations) - len(kept)} of {len(annotations)} annotations "
            f"(zero-area boxes, boxes outside their image by more than {OUT_OF_IMAGE_TOLERANCE:g} px, "
            "or an unknown image or category)"
        )
        data["annotations"] = kept
    if any(a.get("id") == 0 for a in kept):
        for a in kept:
            a["id"] += 1
        logger.warning(f"--register-coco {name}: annotation ids start at 0, which COCOeval reads as unmatched; shifted by +1")
        changed = True
    used = {a["category_id"] for a in kept}
    unused = [c["name"] for c in data["categories"] if c["id"] not in used]
    if unused:
        logger.warning(f"--register-coco {name}: categories without any annotation: {', '.join(unused)}")
    return changed


def _repaired_path(name, json_file):
    stat = os.stat(json_file)
    key = hashlib.sha1(f"{os.path.abspath(json_file)}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    return _cache_dir() / f"{name}-{key}.json"


def prepare_user_coco(name, json_file, image_root):
    """Checks (and if needed repairs a copy of) a COCO instances file.

    Returns:
        (json path to register: the user's file or the repaired copy, category names in id order).
    Raises:
        DatasetError: one line, for a missing or malformed file or a missing image.
    """
    data = _read(name, json_file)
    _check_images(name, data, json_file, image_root)
    classes = [c["name"] for c in sorted(data["categories"], key=lambda c: c["id"])]
    if not _repair(name, data):
        return str(json_file), classes
    path = _repaired_path(name, json_file)
    with atomic_open(path, "w") as f:
        json.dump(data, f)
    logger.info(f"--register-coco {name}: repaired copy at {path} ({json_file} is unchanged)")
    return str(path), classes


def register_user_coco(name, json_file, image_root, classes):
    """Registers ``name`` like ``register_coco_instances`` (idempotent for the same files)."""
    if name in DatasetCatalog:
        meta = MetadataCatalog.get(name)
        if meta.get("json_file") == json_file and meta.get("image_root") == image_root:
            return
        raise DatasetError(f"--register-coco {name}: a dataset of that name is already registered; choose another name")
    register_coco_instances(name, {"thing_classes": list(classes)}, json_file, image_root)


def model_class_count(cfg):
    """``(key, value)``: the class count of the model a YACS or LazyConfig ``cfg`` builds and its key as
    that config spells it (``MODEL.ROI_HEADS.NUM_CLASSES``, ``model.num_classes``, ...); None without one."""
    if isinstance(cfg, CfgNode):
        head = "RETINANET" if cfg.MODEL.META_ARCHITECTURE == "RetinaNet" else "ROI_HEADS"
        return f"MODEL.{head}.NUM_CLASSES", cfg.MODEL[head].NUM_CLASSES
    for key in ("model.roi_heads.num_classes", "model.num_classes"):  # R-CNNs; RetinaNet, FCOS
        value = OmegaConf.select(cfg, key, default=None)
        if isinstance(value, int):
            return key, value
    return None


def check_num_classes(cfg, names):
    """Raises :class:`DatasetError` unless every dataset of ``names`` with known classes has as many as the
    model of ``cfg`` (YACS or LazyConfig); the message says which key to set, as that config spells it."""
    count = model_class_count(cfg)
    if count is None:
        return
    key, expected = count
    separator = " " if isinstance(cfg, CfgNode) else "="  # how its command line joins key and value
    for name in names:
        classes = MetadataCatalog.get(name).get("thing_classes")
        if classes is not None and len(classes) != expected:
            raise DatasetError(
                f"dataset {name!r} has {len(classes)} categories but {key} = {expected}; "
                f"add {key}{separator}{len(classes)}"
            )
