"""COCO AP broken down by object size, with finer bins than COCO's small/medium/large.

pycocotools' ``COCOeval`` takes its area ranges from ``params.areaRng/areaRngLbl``. COCO's own
ranges (all/small/medium/large) are read from a standard COCOeval run (Detectron2's, when its
evaluator made one); :func:`evaluate_by_size` evaluates only :data:`EXTRA_SIZE_RANGES` on top,
reusing that run's IoUs. A range without ground truth is reported as absent (``None``).
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


def _evaluate(coco_eval, img_ids, max_dets, area_ranges=None):
    """Runs ``coco_eval`` on ``img_ids`` (all when None) with ``max_dets`` and, if given, only the
    ``(metric, label, range)`` triples of ``area_ranges``; returns it."""
    params = coco_eval.params
    if img_ids is not None:
        params.imgIds = list(img_ids)
    params.maxDets = [1, 10, max_dets] if isinstance(max_dets, int) else list(max_dets)
    if area_ranges is not None:
        params.areaRng = [list(area) for _, _, area in area_ranges]
        params.areaRngLbl = [label for _, label, _ in area_ranges]
    coco_eval.evaluate()
    coco_eval.accumulate()
    return coco_eval


def evaluate_by_size(coco_gt, coco_dt, iou_type="bbox", img_ids=None, max_dets=100, coco_eval=None):
    """AP overall and per size range, for all classes and per class.

    Args:
        coco_gt, coco_dt: pycocotools ``COCO`` objects (``coco_dt = coco_gt.loadRes(results)``).
        img_ids: images to evaluate (default: all of ``coco_gt``).
        max_dets: detections per image kept for AP (COCO: 100).
        coco_eval: an evaluated COCOeval of these detections with COCO's area ranges (what
            Detectron2's ``COCOEvaluator`` ran, whose image ids and max detections then apply);
            without it, one runs here (and prints its summary).
    Returns:
        :class:`SizeAP`. COCO's ranges come from ``coco_eval``; the extra ranges from a COCOeval of
        the same class over those ranges alone, which takes ``coco_eval``'s IoUs instead of
        computing them again.
    """
    if coco_eval is None:
        coco_eval = _evaluate(COCOeval(coco_gt, coco_dt, iou_type), img_ids, max_dets)
        coco_eval.summarize()
    extra = type(coco_eval)(coco_gt, coco_dt, iou_type)  # pycocotools' COCOeval or Detectron2's faster twin
    extra.computeIoU = lambda img_id, cat_id: coco_eval.ious[img_id, cat_id]
    _evaluate(extra, coco_eval.params.imgIds, coco_eval.params.maxDets, EXTRA_SIZE_RANGES)

    where = {label: (ev.eval["precision"], ev.params.areaRngLbl.index(label))
             for ev in (coco_eval, extra) for label in ev.params.areaRngLbl}

    def ap(label, iou=slice(None), category=slice(None)):
        # precision: (IoU thresholds, recall, class, area range, max dets)
        precision, area = where[label]
        return _mean_precision(precision[iou, :, category, area, -1])

    metrics = {"AP": ap("all"), "AP50": ap("all", iou=0), "AP75": ap("all", iou=5)}
    metrics.update({name: ap(label) for name, label, _ in SIZE_RANGES})
    ranges = [("AP", "all", None)] + list(SIZE_RANGES)
    per_category = {
        cat["name"]: {name: ap(label, category=k) for name, label, _ in ranges}
        for k, cat in enumerate(coco_gt.loadCats(coco_eval.params.catIds))
    }
    areas = np.array([a["area"] for a in coco_gt.loadAnns(coco_gt.getAnnIds(imgIds=coco_eval.params.imgIds))])
    num_gt = {name: int(((areas >= lo) & (areas < hi)).sum()) for name, _, (lo, hi) in SIZE_RANGES}
    return SizeAP(metrics=metrics, per_category=per_category, num_gt=num_gt)
