"""LIP-Shapes generation and registration; clear errors for missing COCO files."""
import json

import cv2
import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from lip_lab.data import SHAPE_CLASSES, SHAPES_SPLITS, DatasetError, check_dataset_files, ensure_shapes_split, render_image


def test_images_are_deterministic_and_distinct():
    split = SHAPES_SPLITS["lip_shapes_val"]
    a, objects_a = render_image(split, 3)
    b, objects_b = render_image(split, 3)
    c, _ = render_image(split, 4)
    assert np.array_equal(a, b) and objects_a == objects_b
    assert not np.array_equal(a, c)
    assert a.shape == (split.image_size, split.image_size, 3) and a.dtype == np.uint8


def test_split_is_coco_with_all_size_ranges(tmp_path):
    json_file, image_root = ensure_shapes_split("lip_shapes_val", tmp_path)
    coco = json.loads(open(json_file).read())
    assert [c["name"] for c in coco["categories"]] == list(SHAPE_CLASSES)
    assert len(coco["images"]) == SHAPES_SPLITS["lip_shapes_val"].num_images
    assert min(a["id"] for a in coco["annotations"]) == 1  # COCOeval treats id 0 as unmatched
    areas = np.array([a["area"] for a in coco["annotations"]])
    assert (areas < 16**2).sum() > 100 and ((areas >= 16**2) & (areas < 32**2)).sum() > 100
    assert ((areas >= 32**2) & (areas < 96**2)).sum() > 100 and (areas >= 96**2).sum() > 10
    assert cv2.imread(f"{image_root}/{coco['images'][0]['file_name']}").shape[:2] == (192, 192)
    assert ensure_shapes_split("lip_shapes_val", tmp_path) == (json_file, image_root)  # cached


def test_interrupted_generation_leaves_nothing(tmp_path, monkeypatch):
    calls = []

    def failing_imwrite(path, image):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt  # what Ctrl-C raises mid-generation
        return cv2.imwrite(path, image)

    monkeypatch.setattr("lip_lab.data.shapes.cv2.imwrite", failing_imwrite)
    with pytest.raises(KeyboardInterrupt):
        ensure_shapes_split("lip_shapes_mini_val", tmp_path)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    json_file, _ = ensure_shapes_split("lip_shapes_mini_val", tmp_path)
    assert len(json.load(open(json_file))["images"]) == SHAPES_SPLITS["lip_shapes_mini_val"].num_images


def test_splits_are_registered():
    for name in ("lip_shapes_train", "lip_shapes_val", "lip_shapes_mini_train", "lip_shapes_mini_val"):
        assert name in DatasetCatalog.list()
        meta = MetadataCatalog.get(name)
        assert meta.thing_classes == list(SHAPE_CLASSES) and meta.evaluator_type == "coco"


def test_missing_coco_says_where_and_how(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # Detectron2's COCO paths are relative to $DETECTRON2_DATASETS=datasets
    with pytest.raises(DatasetError, match=r"instances_val2017\.json; lay COCO out as \$DETECTRON2_DATASETS"):
        check_dataset_files("coco_2017_val")
    (tmp_path / "datasets/coco/annotations").mkdir(parents=True)
    (tmp_path / "datasets/coco/annotations/instances_val2017.json").write_text("{}")
    with pytest.raises(DatasetError, match=r"image folder not found at .*val2017; lay COCO out"):
        check_dataset_files("coco_2017_val")
    with pytest.raises(DatasetError, match="'coco_2071_val' is not registered"):
        check_dataset_files("coco_2071_val")
