"""COCO evaluation with AP broken down by object size."""
from .evaluator import SizeAPEvaluator
from .report import format_size_table, format_small_category_table, plot_size_ap, write_size_reports
from .size_ap import EXTRA_SIZE_RANGES, SIZE_RANGES, SizeAP, evaluate_by_size, renumber_zero_annotation_ids

__all__ = [
    "SizeAPEvaluator", "evaluate_by_size", "renumber_zero_annotation_ids", "SizeAP", "SIZE_RANGES",
    "EXTRA_SIZE_RANGES", "format_size_table", "format_small_category_table", "plot_size_ap", "write_size_reports",
]
