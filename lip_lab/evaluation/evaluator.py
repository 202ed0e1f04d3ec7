"""A ``COCOEvaluator`` that also reports AP by object size (see :mod:`.size_ap`)."""
import logging
from pathlib import Path

from detectron2.evaluation import COCOEvaluator

from .report import format_size_table, format_small_category_table, write_size_reports
from .size_ap import evaluate_by_size, renumber_zero_annotation_ids

__all__ = ["SizeAPEvaluator"]

logger = logging.getLogger(__name__)


def _run_label(output_dir):
    """``<run>`` of an ``output_dir`` ``<run>/inference/<dataset>`` (where the tools evaluate), else "model"."""
    parts = Path(output_dir).parts if output_dir else ()
    return parts[-3] if len(parts) >= 3 and parts[-2] == "inference" else "model"


class SizeAPEvaluator(COCOEvaluator):
    """Detectron2's COCO evaluation plus AP in finer size bins and per-category small-object AP.

    The extra size bins are evaluated on top of Detectron2's own COCOeval run, with its IoUs.
    They join the results dict (``bbox/AP<16``...), are logged as tables and written to
    ``output_dir`` as ``ap_by_size_<task>.{json,csv,png}`` under ``run_label`` (default: the run
    folder of ``<run>/inference/<dataset>``), for ``bbox`` and, with masks, ``segm``. A size range
    or class without ground truth is left out of the results rather than reported as NaN.
    """

    def __init__(self, dataset_name, *args, run_label=None, **kwargs):
        super().__init__(dataset_name, *args, **kwargs)
        self._run_label = run_label or _run_label(self._output_dir)
        if renumber_zero_annotation_ids(self._coco_api):
            logger.warning(
                f"{dataset_name}: annotation ids start at 0, which COCOeval reads as 'unmatched'; "
                "evaluating with ids shifted by +1 (the file is left unchanged)"
            )

    # Private in Detectron2, but the one place its evaluated COCOeval is handed out: overriding it
    # adds the size bins to that run instead of evaluating the detections a second time.
    def _derive_coco_results(self, coco_eval, iou_type, class_names=None):
        results = super()._derive_coco_results(coco_eval, iou_type, class_names)
        if coco_eval is None or iou_type == "keypoints":
            return results
        size_ap = evaluate_by_size(coco_eval.cocoGt, coco_eval.cocoDt, iou_type, coco_eval=coco_eval)
        runs = {self._run_label: size_ap}
        message = f"AP by object size ({iou_type}):\n{format_size_table(runs)}\n"
        message += f"Per-category AP on small objects ({iou_type}):\n{format_small_category_table(runs)}"
        if self._output_dir:
            paths = write_size_reports(runs, self._output_dir, stem=f"ap_by_size_{iou_type}")
            message += "\nWritten: " + ", ".join(paths.values())
        logger.info(message)
        results.update(size_ap.metrics)
        # No ground truth in a size range or class: absent, not NaN / -1.
        return {k: v for k, v in results.items() if v is not None and v == v}
