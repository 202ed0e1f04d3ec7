"""LIP-Shapes: a seeded, COCO-format detection dataset with many small objects.

Each image is a textured, noisy background with filled shapes of four classes whose sides
span 5 to 150 px, so COCO's small / medium / large ranges and objects under 16 px all occur.
Everything derives from ``(seed, image index)``: the same split is byte-identical on
every machine. A split is written once into a cache folder, atomically (into a temporary
folder that is renamed when complete), so a killed generation never leaves half a dataset.
"""
import json
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from .cache import data_root

__all__ = ["SHAPE_CLASSES", "ShapesSplit", "SHAPES_SPLITS", "shapes_root", "shapes_split_paths", "ensure_shapes_split", "render_image"]

SHAPE_CLASSES = ("circle", "square", "triangle", "cross")
FORMAT_VERSION = 1  # bump when the generator changes: splits live in a folder named after it


@dataclass(frozen=True)
class ShapesSplit:
    """One split: ``num_images`` images of ``image_size`` x ``image_size`` pixels."""

    num_images: int
    seed: int
    image_size: int = 192
    max_objects: int = 12

    @property
    def folder(self):
        return f"v{FORMAT_VERSION}_n{self.num_images}_s{self.seed}_px{self.image_size}"


SHAPES_SPLITS = {
    "lip_shapes_train": ShapesSplit(num_images=1200, seed=0),
    "lip_shapes_val": ShapesSplit(num_images=200, seed=1),
    # Tiny splits for smoke tests and CI.
    "lip_shapes_mini_train": ShapesSplit(num_images=16, seed=2),
    "lip_shapes_mini_val": ShapesSplit(num_images=8, seed=3),
}


def shapes_root():
    """Cache folder of all splits: ``shapes/`` in :func:`~lip_lab.data.cache.data_root`."""
    return data_root() / "shapes"


def _background(rng, size):
    """A smooth colour field plus a random stripe texture and pixel noise: (size, size, 3) uint8."""
    coarse = rng.uniform(40, 215, size=(4, 4, 3)).astype(np.float32)
    image = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    angle, period = rng.uniform(0, math.pi), rng.uniform(6, 30)
    stripes = np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * 2 * math.pi / period)
    image += rng.uniform(5, 25) * stripes[..., None]
    image += rng.normal(0, rng.uniform(4, 16), size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _object_side(rng):
    """Side length in px drawn as 45% 5-32, 40% 32-96, 15% 96-150 (large ones fit less often)."""
    bucket = rng.choice(3, p=(0.45, 0.40, 0.15))
    low, high = ((5, 32), (32, 96), (96, 150))[bucket]
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


_SHIFT = 4  # OpenCV fixed-point coordinates: 1/16 px, for sub-pixel shapes


def _fixed_point(*points):
    return np.round(np.array(points, np.float64) * (1 << _SHIFT)).astype(np.int32)


def _draw(image, cls, box, color):
    """Fills shape ``cls`` (an index into SHAPE_CLASSES) inside ``box`` = (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = box
    cx, cy, w, h = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0
    fx = _fixed_point
    name = SHAPE_CLASSES[cls]
    if name == "circle":
        cv2.ellipse(image, fx(cx, cy), fx(w / 2, h / 2), 0, 0, 360, color, -1, cv2.LINE_AA, _SHIFT)
    elif name == "square":
        cv2.rectangle(image, fx(x0, y0), fx(x1, y1), color, -1, cv2.LINE_AA, _SHIFT)
    elif name == "triangle":
        cv2.fillPoly(image, [fx((cx, y0), (x1, y1), (x0, y1))], color, cv2.LINE_AA, _SHIFT)
    else:  # cross: two bars a third of the box thick
        t = w / 6, h / 6
        cv2.rectangle(image, fx(x0, cy - t[1]), fx(x1, cy + t[1]), color, -1, cv2.LINE_AA, _SHIFT)
        cv2.rectangle(image, fx(cx - t[0], y0), fx(cx + t[0], y1), color, -1, cv2.LINE_AA, _SHIFT)


def _overlaps(box, boxes, margin=2):
    x0, y0, x1, y1 = box
    return any(x0 < b[2] + margin and b[0] < x1 + margin and y0 < b[3] + margin and b[1] < y1 + margin for b in boxes)


def render_image(split, index):
    """Image ``index`` of ``split``: (HxWx3 uint8 BGR image, [(class index, box xyxy), ...])."""
    rng = np.random.default_rng((split.seed, index))
    size = split.image_size
    image = _background(rng, size)
    objects = []
    for _ in range(int(rng.integers(3, split.max_objects + 1))):
        for _attempt in range(10):  # rejection sampling: objects do not overlap
            side, aspect = _object_side(rng), rng.uniform(0.75, 1.33)
            w, h = (min(v, size - 2) for v in (side * math.sqrt(aspect), side / math.sqrt(aspect)))
            x0, y0 = rng.uniform(1, size - 1 - w), rng.uniform(1, size - 1 - h)
            box = (x0, y0, x0 + w, y0 + h)
            if not _overlaps(box, [b for _, b in objects]):
                cls = int(rng.integers(len(SHAPE_CLASSES)))
                contrast = rng.choice((-1, 1)) * rng.uniform(60, 140)
                base = image[int(y0):int(y0 + h) + 1, int(x0):int(x0 + w) + 1].reshape(-1, 3).mean(0)
                color = tuple(float(c) for c in np.clip(base + contrast * rng.uniform(0.6, 1.0, 3), 0, 255))
                _draw(image, cls, box, color)
                objects.append((cls, box))
                break
    return image, objects


def _coco_dict(split, records):
    images, annotations = [], []
    for image_id, (file_name, objects) in enumerate(records, start=1):
        images.append({"id": image_id, "file_name": file_name, "width": split.image_size, "height": split.image_size})
        for cls, (x0, y0, x1, y1) in objects:
            w, h = x1 - x0, y1 - y0
            annotations.append({
                "id": len(annotations) + 1,  # COCOeval reads id 0 as "unmatched": start at 1
                "image_id": image_id,
                "category_id": cls + 1,
                "bbox": [round(v, 2) for v in (x0, y0, w, h)],
                "area": round(w * h, 2),  # box area: the size that AP-by-size bins
                "iscrowd": 0,
            })
    categories = [{"id": i + 1, "name": n, "supercategory": "shape"} for i, n in enumerate(SHAPE_CLASSES)]
    return {"images": images, "annotations": annotations, "categories": categories}


def shapes_split_paths(name, root=None):
    """(json_file, image_root) of split ``name`` under ``root`` (default :func:`shapes_root`)."""
    final = Path(root or shapes_root()) / SHAPES_SPLITS[name].folder
    return final / "annotations.json", final / "images"


def ensure_shapes_split(name, root=None):
    """Generates split ``name`` unless cached; returns (json_file, image_root) as strings.

    Safe against kills and concurrent callers: a split folder appears only when complete.
    """
    split = SHAPES_SPLITS[name]
    json_file, image_root = shapes_split_paths(name, root)
    final = json_file.parent
    if json_file.exists():
        return str(json_file), str(image_root)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{split.folder}.", dir=final.parent))
    try:
        (staging / "images").mkdir()
        records = []
        for index in tqdm(range(split.num_images), desc=f"Generating {name} in {final}", unit="img"):
            image, objects = render_image(split, index)
            file_name = f"{index:06d}.png"
            cv2.imwrite(str(staging / "images" / file_name), image)
            records.append((file_name, objects))
        (staging / "annotations.json").write_text(json.dumps(_coco_dict(split, records)))
        try:
            staging.rename(final)
        except OSError:  # another process finished the same split first
            if not json_file.exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return str(json_file), str(image_root)
