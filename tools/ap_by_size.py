#!/usr/bin/env python
"""AP by object size for saved detections, one run or several side by side.

    python tools/ap_by_size.py --gt annotations.json \\
        --results output/lip/inference/coco_instances_results.json --label LIP \\
        --results output/vanilla/inference/coco_instances_results.json --label vanilla \\
        --output-dir output/compare

``--dataset lip_shapes_val`` instead of ``--gt`` reads a registered dataset's json.
Prints the tables and writes ap_by_size.{json,csv,png} into --output-dir.
"""
import argparse
import contextlib
import io
import json
import os
import sys

from detectron2.data import MetadataCatalog
from pycocotools.coco import COCO

from lip_lab.cli import UsageError, add_register_coco_argument, register_user_datasets, reports_input_errors
from lip_lab.data import check_dataset_files, prepare_datasets
from lip_lab.evaluation import (
    evaluate_by_size,
    format_size_table,
    format_small_category_table,
    renumber_zero_annotation_ids,
    write_size_reports,
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    gt = parser.add_mutually_exclusive_group(required=True)
    gt.add_argument("--gt", help="COCO instances json with the ground truth")
    gt.add_argument("--dataset", help="or a registered dataset name whose json to use, e.g. lip_shapes_val")
    parser.add_argument("--results", required=True, action="append", help="coco_instances_results.json (repeatable)")
    parser.add_argument("--label", action="append", help="name of each --results run, in the same order")
    parser.add_argument("--iou-type", default="bbox", choices=("bbox", "segm"))
    parser.add_argument("--output-dir", default="ap_by_size", help="where the json / csv / png go")
    add_register_coco_argument(parser)
    args = parser.parse_args(argv)
    labels = args.label or [os.path.basename(os.path.dirname(os.path.abspath(p))) or p for p in args.results]
    if len(labels) != len(args.results) or len(set(labels)) != len(labels):
        parser.error(f"give one distinct --label per --results ({len(args.results)} results, labels {labels})")
    if args.dataset:
        register_user_datasets(args)
        args.gt = _dataset_json(args.dataset)
    return args, labels


def _dataset_json(name):
    check_dataset_files(name)
    prepare_datasets([name])
    return MetadataCatalog.get(name).json_file


def _load_json(path, what):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"cannot read {what} {path}: {exc}") from None


@reports_input_errors
def main(argv=None):
    args, labels = parse_args(argv)
    gt_dict = _load_json(args.gt, "ground truth")
    if not isinstance(gt_dict, dict) or not {"images", "annotations", "categories"} <= gt_dict.keys():
        raise UsageError(f"{args.gt} is not a COCO instances file (needs images, annotations, categories)")
    coco_gt = COCO()
    coco_gt.dataset = gt_dict
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt.createIndex()
    if renumber_zero_annotation_ids(coco_gt):
        print(f"note: {args.gt} has annotation id 0, which COCOeval reads as 'unmatched'; ids shifted by +1")
    runs = {}
    for label, path in zip(labels, args.results):
        detections = _load_json(path, "results")
        if not detections:
            raise UsageError(f"{path} has no detections")
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools' progress prints
            runs[label] = evaluate_by_size(coco_gt, coco_gt.loadRes(detections), args.iou_type)
    print(f"AP by object size ({args.iou_type}, {args.gt}):\n{format_size_table(runs)}\n")
    print(f"Per-category AP on small objects:\n{format_small_category_table(runs)}\n")
    for kind, path in write_size_reports(runs, args.output_dir).items():
        print(f"{kind}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
