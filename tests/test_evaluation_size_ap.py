"""AP by object size: the standard numbers are pycocotools' own, extra bins and absent ranges."""
import contextlib
import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from helpers import load_tool
from lip_lab.evaluation import evaluate_by_size, renumber_zero_annotation_ids, write_size_reports

STANDARD = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def _ground_truth(first_ann_id=1):
    """3 images; 'cat' and 'dog' boxes of side 10, 24 and 50 px; no 'bird' and nothing >= 96 px."""
    rng = np.random.default_rng(0)
    images, anns = [], []
    for image_id in (1, 2, 3):
        images.append({"id": image_id, "width": 200, "height": 200, "file_name": f"{image_id}.jpg"})
        for k, side in enumerate((10, 24, 50, 12, 30)):
            x, y = 35 * k + rng.uniform(0, 5), 40 * (image_id - 1) + rng.uniform(0, 5)
            anns.append({
                "id": len(anns) + first_ann_id, "image_id": image_id, "category_id": 1 + k % 2,
                "bbox": [x, y, side, side], "area": side * side, "iscrowd": 0,
            })
    cats = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 3, "name": "bird"}]
    return {"images": images, "annotations": anns, "categories": cats}


def _detections(gt, seed=1):
    """Jittered copies of most boxes with random scores, some misses, a wrong class, false positives."""
    rng = np.random.default_rng(seed)
    dets = []
    for ann in gt["annotations"]:
        if rng.uniform() < 0.2:
            continue
        x, y, w, h = ann["bbox"]
        jitter = rng.normal(0, 0.12 * w, 4)
        cat = ann["category_id"] if rng.uniform() > 0.1 else 3
        dets.append({"image_id": ann["image_id"], "category_id": cat, "score": float(rng.uniform(0.3, 1)),
                     "bbox": [x + jitter[0], y + jitter[1], w + jitter[2], h + jitter[3]]})
    for image_id in (1, 2, 3):
        dets.append({"image_id": image_id, "category_id": 1, "score": 0.5, "bbox": [150, 150, 20, 20]})
    return dets


def _coco(gt):
    coco = COCO()
    coco.dataset = json.loads(json.dumps(gt))
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _pycocotools_stats(gt, dets):
    coco = _coco(gt)
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(coco, coco.loadRes(dets), "bbox")
        ev.evaluate(), ev.accumulate(), ev.summarize()
    return ev.stats


def _size_ap(gt, dets):
    coco = _coco(gt)
    with contextlib.redirect_stdout(io.StringIO()):
        return evaluate_by_size(coco, coco.loadRes(dets))


def test_standard_metrics_equal_pycocotools():
    gt = _ground_truth()
    dets = _detections(gt)
    stats = _pycocotools_stats(gt, dets)
    metrics = _size_ap(gt, dets)["metrics"]
    for i, name in enumerate(STANDARD[:5]):  # APl: no ground truth, see below
        assert stats[i] >= 0
        assert metrics[name] == pytest.approx(stats[i] * 100, abs=1e-9), name
    assert 0 < metrics["AP"] < 100


def test_ranges_without_ground_truth_are_absent():
    gt = _ground_truth()
    result = _size_ap(gt, _detections(gt))
    assert _pycocotools_stats(gt, _detections(gt))[5] == -1  # pycocotools' "no ground truth"
    assert result["metrics"]["APl"] is None
    assert result["per_category"]["bird"]["AP"] is None  # a class without objects
    assert result["per_category"]["cat"]["AP"] is not None


def test_fine_bins_match_a_restricted_ground_truth():
    """AP<16 equals plain COCOeval AP when only boxes under 16 px count (the others ignored)."""
    gt = _ground_truth()
    dets = _detections(gt)
    coco = _coco(gt)
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(coco, coco.loadRes(dets), "bbox")
        ev.params.areaRng, ev.params.areaRngLbl = [[0, 16**2]] * 4, ["all", "small", "medium", "large"]
        ev.evaluate(), ev.accumulate(), ev.summarize()
    result = _size_ap(gt, dets)
    assert result["metrics"]["AP<16"] == pytest.approx(ev.stats[0] * 100)
    assert result["num_gt"]["AP<16"] == 6 and result["num_gt"]["AP16_32"] == 6


def test_zero_annotation_ids_are_renumbered():
    gt = _ground_truth(first_ann_id=0)
    perfect = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
               for a in gt["annotations"]]
    assert _pycocotools_stats(gt, perfect)[0] < 0.99  # the pitfall: id 0 never counts as matched
    coco = _coco(gt)
    assert renumber_zero_annotation_ids(coco)
    with contextlib.redirect_stdout(io.StringIO()):
        result = evaluate_by_size(coco, coco.loadRes(perfect))
    assert result["metrics"]["AP"] == pytest.approx(100)
    assert not renumber_zero_annotation_ids(coco)


def test_reports_and_two_run_tool(tmp_path, capsys):
    gt = _ground_truth()
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    for name, seed in (("a", 1), ("b", 2)):
        (tmp_path / f"{name}.json").write_text(json.dumps(_detections(gt, seed)))
    out = tmp_path / "cmp"
    status = load_tool("ap_by_size").main([
        "--gt", str(tmp_path / "gt.json"), "--results", str(tmp_path / "a.json"), "--label", "LIP",
        "--results", str(tmp_path / "b.json"), "--label", "vanilla", "--output-dir", str(out)])
    stdout = capsys.readouterr().out
    assert status == 0 and "LIP - vanilla" in stdout and "absent" in stdout
    saved = json.loads((out / "ap_by_size.json").read_text())
    assert saved["LIP"]["metrics"]["AP"] == pytest.approx(_size_ap(gt, _detections(gt, 1))["metrics"]["AP"])
    assert saved["vanilla"]["metrics"]["APl"] is None
    rows = list(csv.reader((out / "ap_by_size.csv").open()))
    assert rows[0] == ["category", "metric", "LIP", "vanilla"]
    assert ["all", "APl", "", ""] in rows
    assert (out / "ap_by_size.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tool_reports_a_bad_results_file_in_one_line(tmp_path, capsys):
    (tmp_path / "gt.json").write_text(json.dumps(_ground_truth()))
    (tmp_path / "empty.json").write_text("[]")
    status = load_tool("ap_by_size").main([
        "--gt", str(tmp_path / "gt.json"), "--results", str(tmp_path / "empty.json")])
    assert status == 2 and capsys.readouterr().err.strip() == f"error: {tmp_path / 'empty.json'} has no detections"


def test_single_run_reports(tmp_path):
    gt = _ground_truth()
    paths = write_size_reports({"run": _size_ap(gt, _detections(gt))}, tmp_path, stem="x")
    assert sorted(Path(p).name for p in paths.values()) == ["x.csv", "x.json", "x.png"]
    assert not list(tmp_path.glob(".*tmp"))  # no temporary files left behind


def test_evaluator_on_zero_based_ids(tmp_path):
    """SizeAPEvaluator scores perfect detections 100 on a user file whose ids start at 0."""
    import torch
    from detectron2.data import DatasetCatalog
    from detectron2.data.datasets import register_coco_instances
    from detectron2.structures import Boxes, Instances

    from lip_lab.evaluation import SizeAPEvaluator

    gt = _ground_truth(first_ann_id=0)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    register_coco_instances(f"zero_ids_{tmp_path.name}", {}, str(tmp_path / "gt.json"), str(tmp_path))
    DatasetCatalog.get(f"zero_ids_{tmp_path.name}")  # sets the class id mapping, as a test loader does
    evaluator = SizeAPEvaluator(f"zero_ids_{tmp_path.name}", output_dir=str(tmp_path / "eval"), run_label="perfect")
    evaluator.reset()
    for image in gt["images"]:
        anns = [a for a in gt["annotations"] if a["image_id"] == image["id"]]
        inst = Instances((image["height"], image["width"]))
        inst.pred_boxes = Boxes(torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)]))
        inst.scores = torch.ones(len(anns))
        inst.pred_classes = torch.tensor([a["category_id"] - 1 for a in anns])
        evaluator.process([{"image_id": image["id"]}], [{"instances": inst}])
    results = evaluator.evaluate()["bbox"]
    assert results["AP"] == pytest.approx(100) and results["AP<16"] == pytest.approx(100)
    assert "APl" not in results and "AP-bird" not in results  # absent, not NaN
    saved = json.loads((tmp_path / "eval" / "ap_by_size_bbox.json").read_text())
    assert saved["perfect"]["metrics"]["APl"] is None


def test_evaluator_reports_mask_ap_by_size_beside_box_ap(tmp_path):
    """segm gets the same AP-by-size report as bbox; its standard numbers are pycocotools' segm ones."""
    import torch
    from detectron2.data import DatasetCatalog
    from detectron2.data.datasets import register_coco_instances
    from detectron2.structures import Boxes, Instances

    from lip_lab.evaluation import SizeAPEvaluator

    gt = _ground_truth()
    for ann in gt["annotations"]:
        x, y, w, h = ann["bbox"]
        ann["segmentation"] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    name = f"masks_{tmp_path.name}"
    register_coco_instances(name, {}, str(tmp_path / "gt.json"), str(tmp_path))
    DatasetCatalog.get(name)
    evaluator = SizeAPEvaluator(name, output_dir=str(tmp_path / "eval"), run_label="run")
    evaluator.reset()
    dets = _detections(gt)
    for image in gt["images"]:
        mine = [d for d in dets if d["image_id"] == image["id"]]
        inst = Instances((image["height"], image["width"]))
        boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (d["bbox"] for d in mine)])
        inst.pred_boxes = Boxes(boxes)
        inst.scores = torch.tensor([d["score"] for d in mine])
        inst.pred_classes = torch.tensor([d["category_id"] - 1 for d in mine])
        ys, xs = torch.meshgrid(torch.arange(200) + 0.5, torch.arange(200) + 0.5, indexing="ij")
        inst.pred_masks = torch.stack([(xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1) for x0, y0, x1, y1 in boxes])
        evaluator.process([{"image_id": image["id"]}], [{"instances": inst}])
    results = evaluator.evaluate()
    assert results["segm"].keys() == results["bbox"].keys() >= {"AP", "AP<16", "AP16_32", "APs", "APm"}
    assert results["segm"]["AP"] != results["bbox"]["AP"]  # masks were scored, not boxes again
    coco = _coco(gt)
    with contextlib.redirect_stdout(io.StringIO()):
        predictions = json.loads((tmp_path / "eval" / "coco_instances_results.json").read_text())
        ev = COCOeval(coco, coco.loadRes(predictions), "segm")
        ev.evaluate(), ev.accumulate(), ev.summarize()
    for i, metric in enumerate(STANDARD[:5]):
        assert results["segm"][metric] == pytest.approx(ev.stats[i] * 100, abs=1e-9), metric
    reports = {task: json.loads((tmp_path / "eval" / f"ap_by_size_{task}.json").read_text()) for task in ("bbox", "segm")}
    assert reports["segm"]["run"]["metrics"].keys() == reports["bbox"]["run"]["metrics"].keys()
    assert reports["segm"]["run"]["metrics"]["AP<16"] == pytest.approx(results["segm"]["AP<16"])
    assert (tmp_path / "eval" / "ap_by_size_segm.png").is_file()
