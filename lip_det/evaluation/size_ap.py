"""COCO AP broken down by object size, with finer bins than COCO's small/medium/large.

pycocotools' ``COCOeval`` takes its area ranges from ``params.areaRng/areaRngLbl``;
:func:`evaluate_by_size` extends them with :data:`EXTRA_SIZE_RANGES` while keeping the
``all/small/medium/large`` labels that ``summarize()`` looks up, so the standard numbers
are pycocotools' own. A range without ground truth is reported as absent (``None``).
"""
import numpy as np
from pycocotools.cocoeval import COCOeval

__all__ = ["SIZE_RANGES", "EXTRA_SIZE_RANGES", "SizeAP", "evaluate_by_size", "renumber_zero_annotation_ids"]

# (metric name, label in COCOeval, area range in px^2). Areas are COCO's "area" field.
COCO_SIZE_RANGES = (
    ("APs", "small", (0, 32**2)),
    ("APm", "medium", (32**2, 96**2)),
    ("APl", "large", (96**2, 1e10)),
)
EXTRA_SIZE_RANGES = (
    ("AP<16", "tiny", (0, 16**2)),
    ("AP16_32", "small16-32", (16**2, 32**2)),
)
# Left-to-right order of tables and charts: finest small bins first.
SIZE_RANGES = EXTRA_SIZE_RANGES + COCO_SIZE_RANGES
SMALL_METRICS = ("APs", "AP<16", "AP16_32")


def _mean_precision(precision):
    """Mean of the valid (> -1) entries of a COCOeval precision slice, in %, or None."""
    valid = precision[precision > -1]
    return float(valid.mean() * 100) if valid.size else None


class SizeAP(dict):
    """``{"metrics": {name: AP or None}, "per_category": {class: {name: AP or None}}, "num_gt": {...}}``."""

    @property
    def metrics(self):
        return self["metrics"]


def renumber_zero_annotation_ids(coco):
    """Shifts annotation ids of a pycocotools ``COCO`` up by one if any is 0 (in place).

    COCOeval marks unmatched boxes with id 0, so a ground-truth box with id 0 is never
    counted as matched and perfect detections score below 100 AP. Returns True if shifted.
    """
    if 0 not in coco.anns:
        return False
    for ann in coco.dataset["annotations"]:
        ann["id"] += 1
    coco.createIndex()
    return True


def evaluate_by_size(coco_gt, coco_dt, iou_type="bbox", img_ids=None, max_dets=100):
    """Runs COCOeval once with COCO's and the extra area ranges.

    Args:
        coco_gt, coco_dt: pycocotools ``COCO`` objects (``coco_dt = coco_gt.loadRes(results)``).
        img_ids: images to evaluate (default: all of ``coco_gt``).
        max_dets: detections per image kept for AP (COCO: 100).
    Returns:
        (:class:`SizeAP`, the evaluated ``COCOeval``, whose ``stats`` are the standard 12).
    """
    coco_eval = COCOeval(coco_gt, coco_dt, iou_type)
    if img_ids is not None:
        coco_eval.params.imgIds = list(img_ids)
    coco_eval.params.maxDets = [1, 10, max_dets]
    coco_eval.params.areaRng = [[0, 1e10]] + [list(r) for _, _, r in COCO_SIZE_RANGES + EXTRA_SIZE_RANGES]
    coco_eval.params.areaRngLbl = ["all"] + [label for _, label, _ in COCO_SIZE_RANGES + EXTRA_SIZE_RANGES]
    coco_eval.evaluate()
    coco_eval.accumulate()
    coco_eval.summarize()

    precision = coco_eval.eval["precision"]  # (iou thresholds, recall, class, area range, max dets)
    labels = coco_eval.params.areaRngLbl
    ranges = [("AP", "all", None)] + list(SIZE_RANGES)
    metrics = {
        "AP": _mean_precision(precision[:, :, :, 0, -1]),
        "AP50": _mean_precision(precision[0, :, :, 0, -1]),
        "AP75": _mean_precision(precision[5, :, :, 0, -1]),
    }
    metrics.update({name: _mean_precision(precision[:, :, :, labels.index(lbl), -1]) for name, lbl, _ in SIZE_RANGES})
    cats = coco_gt.loadCats(coco_eval.params.catIds)
    per_category = {
        cat["name"]: {
            name: _mean_precision(precision[:, :, k, labels.index(lbl), -1]) for name, lbl, _ in ranges
        }
        for k, cat in enumerate(cats)
    }
    areas = np.array([a["area"] for a in coco_gt.loadAnns(coco_gt.getAnnIds(imgIds=coco_eval.params.imgIds))])
    num_gt = {name: int(((areas >= lo) & (areas < hi)).sum()) for name, _, (lo, hi) in SIZE_RANGES}
    return SizeAP(metrics=metrics, per_category=per_category, num_gt=num_gt), coco_eval
