"""Built-in datasets: LIP-Shapes (generated), and one-line errors for missing or malformed files."""
from .builtin import DatasetError, check_dataset_files, malformed_annotations_as_dataset_error, prepare_datasets
from .shapes import SHAPE_CLASSES, SHAPES_SPLITS, ensure_shapes_split, render_image, shapes_root

__all__ = [
    "DatasetError", "check_dataset_files", "malformed_annotations_as_dataset_error", "prepare_datasets",
    "SHAPE_CLASSES", "SHAPES_SPLITS", "ensure_shapes_split", "render_image", "shapes_root",
]
