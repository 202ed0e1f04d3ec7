"""Built-in datasets: LIP-Shapes (generated) and checked COCO registrations."""
from .builtin import DatasetError, check_dataset_files, prepare_datasets
from .shapes import SHAPE_CLASSES, SHAPES_SPLITS, ensure_shapes_split, render_image, shapes_root

__all__ = [
    "DatasetError", "check_dataset_files", "prepare_datasets",
    "SHAPE_CLASSES", "SHAPES_SPLITS", "ensure_shapes_split", "render_image", "shapes_root",
]
