"""A study's results: per-arm mean +- std and paired differences against the baseline arm,
as a log table, ``study.json`` / ``study.csv`` and PNG charts."""
import contextlib
import csv
import io
import json
import math
import os

import numpy as np
from matplotlib import colormaps

from ..evaluation.report import METRIC_ORDER
from ..evaluation.size_ap import evaluate_by_size
from ..utils.atomic import atomic_open
from ..utils.plot import figure, grouped_bars, legend_beside, save_png
from ..utils.table import format_table
from .runner import has_no_detections, results_path
from .stats import paired_difference, summarize

__all__ = [
    "collect_results", "no_detection_runs", "no_detection_size_ap", "aggregate", "format_study_table",
    "format_no_detections", "write_study_reports",
]

CATEGORY_METRICS = ("AP<16", "APs")
"""Per-category metrics a study aggregates (small objects), as ``<category>/<metric>``."""


def no_detection_size_ap(coco_gt, iou_type="bbox"):
    """The AP-by-size of a model that detects nothing on ``coco_gt`` (a pycocotools ``COCO``):
    COCOeval on an empty detection set, so 0 wherever there is ground truth and None (absent)
    for size ranges and classes without any, exactly as for a model that does detect."""
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        empty = COCO()
        empty.dataset = {"images": coco_gt.dataset["images"], "categories": coco_gt.dataset["categories"],
                         "annotations": []}
        empty.createIndex()
        size_ap = evaluate_by_size(coco_gt, empty, iou_type, sorted(coco_gt.getImgIds()))
    return size_ap


_NO_DETECTION_SIZE_AP = {}


def _no_detection_size_ap(test_dataset, inference_dir):
    """:func:`no_detection_size_ap` of a registered dataset (once per process), whose ground truth
    is read as the run's evaluator read it (a dataset without a COCO json is converted into
    ``inference_dir``)."""
    if test_dataset not in _NO_DETECTION_SIZE_AP:
        from ..evaluation import SizeAPEvaluator

        with contextlib.redirect_stdout(io.StringIO()):
            evaluator = SizeAPEvaluator(test_dataset, tasks=("bbox",), distributed=False, output_dir=inference_dir)
        _NO_DETECTION_SIZE_AP[test_dataset] = json.loads(json.dumps(no_detection_size_ap(evaluator._coco_api)))
    return _NO_DETECTION_SIZE_AP[test_dataset]


def _run_size_ap(run, test_dataset):
    """The run's AP-by-size (``{"metrics", "per_category", "num_gt"}``), that of an empty
    detection set for a run without detections, or None for an unfinished run."""
    path = results_path(run, test_dataset)
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            (size_ap,) = json.load(f).values()
        return size_ap
    if has_no_detections(run, test_dataset):
        return _no_detection_size_ap(test_dataset, os.path.dirname(os.path.abspath(path)))
    return None


def no_detection_runs(spec, test_dataset):
    """``{arm: [seeds]}`` of the finished runs whose model made no detection (AP 0)."""
    out = {arm.name: [] for arm in spec.arms}
    for run in spec.runs():
        if has_no_detections(run, test_dataset):
            out[run.arm.name].append(run.seed)
    return out


def collect_results(spec, test_dataset):
    """``{arm: {seed: {metric: AP or None}}}`` of the finished runs, per-category small-object AP
    included as ``"<category>/<metric>"``. A run whose model made no detection counts as AP 0
    for every metric with ground truth (absent for the others), see :func:`no_detection_runs`."""
    results = {arm.name: {} for arm in spec.arms}
    for run in spec.runs():
        size_ap = _run_size_ap(run, test_dataset)
        if size_ap is None:
            continue
        metrics = dict(size_ap["metrics"])
        for category, values in size_ap["per_category"].items():
            metrics.update({f"{category}/{m}": values[m] for m in CATEGORY_METRICS})
        results[run.arm.name][run.seed] = metrics
    return results


def _metric_names(results):
    seen = {m for runs in results.values() for metrics in runs.values() for m in metrics}
    categories = sorted(m for m in seen if "/" in m)
    return [m for m in METRIC_ORDER if m in seen] + categories


def aggregate(results, baseline, confidence=0.95, no_detections=None):
    """Summaries per arm and paired differences (by seed) of each arm against ``baseline``.

    Returns ``{"baseline", "confidence", "metrics", "arms": {arm: {"seeds", "no_detections",
    "summary": {metric: Summary dict}}}, "differences": {arm: {metric: PairedDifference dict}}}``;
    a metric without ground truth in a run (None) leaves that run, or pair, out.
    ``no_detections``: ``{arm: [seeds]}`` of the runs without detections (their results are
    already AP 0, see :func:`collect_results`); it is only reported.
    """
    metrics = _metric_names(results)
    no_detections = no_detections or {}
    out = {"baseline": baseline, "confidence": confidence, "metrics": metrics, "arms": {}, "differences": {}}
    for arm, runs in results.items():
        summary = {}
        for metric in metrics:
            values = [m[metric] for m in runs.values() if m.get(metric) is not None]
            if values:
                summary[metric] = summarize(values).as_dict()
        out["arms"][arm] = {"seeds": sorted(runs), "no_detections": sorted(no_detections.get(arm, [])),
                            "summary": summary}
    base_runs = results[baseline]
    for arm, runs in results.items():
        if arm == baseline:
            continue
        diffs = {}
        for metric in metrics:
            seeds = [
                s for s in sorted(runs)
                if s in base_runs and runs[s].get(metric) is not None and base_runs[s].get(metric) is not None
            ]
            if seeds:
                diffs[metric] = paired_difference(
                    [runs[s][metric] for s in seeds], [base_runs[s][metric] for s in seeds], confidence
                ).as_dict()
        out["differences"][arm] = diffs
    return out


def _mean_std(summary):
    if summary is None:
        return "absent"
    std = "" if summary["std"] is None else f" ± {summary['std']:.2f}"
    return f"{summary['mean']:.2f}{std}"


def _difference(diff):
    if diff is None:
        return "absent"
    if diff["low"] is None:
        return f"{diff['mean']:+.2f} (n=1)"
    star = " *" if diff["excludes_zero"] else ""
    return f"{diff['mean']:+.2f} [{diff['low']:+.2f}, {diff['high']:+.2f}]{star}"


def _arm_header(study, arm):
    body = study["arms"][arm]
    empty = len(body.get("no_detections", ()))
    return f"{arm} (n={len(body['seeds'])}" + (f", {empty} without detections)" if empty else ")")


def format_no_detections(study):
    """One line: how many runs of each arm had no detection (counted as AP 0)."""
    parts = []
    for arm, body in study["arms"].items():
        seeds = body.get("no_detections", [])
        which = f" (seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))})" if seeds else ""
        parts.append(f"{arm} {len(seeds)} of {len(body['seeds'])}{which}")
    return "Runs without any detection (counted as AP 0 where there is ground truth): " + ", ".join(parts)


def format_study_table(study):
    """Pipe table: one row per metric, mean ± std per arm, then each arm - baseline with its CI
    (``*``: the interval excludes 0). An arm's header counts its runs without detections."""
    arms, base = list(study["arms"]), study["baseline"]
    others = [a for a in arms if a != base]
    level = round(study["confidence"] * 100)
    headers = ["metric"] + [_arm_header(study, a) for a in arms]
    headers += [f"{a} - {base} [{level}% CI]" for a in others]
    rows = []
    for metric in study["metrics"]:
        row = [metric] + [_mean_std(study["arms"][a]["summary"].get(metric)) for a in arms]
        row += [_difference(study["differences"][a].get(metric)) for a in others]
        rows.append(row)
    return format_table(headers, rows)


def _write_csv(study, path):
    fields = ("kind", "arm", "metric", "n", "mean", "std", "low", "high", "excludes_zero", "no_detections")
    with atomic_open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, restval="", extrasaction="ignore")
        writer.writeheader()
        for arm, body in study["arms"].items():
            empty = len(body.get("no_detections", ()))
            for metric, summary in body["summary"].items():
                writer.writerow({"kind": "summary", "arm": arm, "metric": metric, **summary, "no_detections": empty})
        for arm, diffs in study["differences"].items():
            for metric, diff in diffs.items():
                writer.writerow({"kind": f"{arm} - {study['baseline']}", "arm": arm, "metric": metric, **diff})


def _arm_colors(arms):
    """``{arm: colour}``, the same in every chart: matplotlib's default cycle for up to 10 arms,
    tab20 beyond (the cycle would repeat)."""
    cmap = colormaps["tab20"]
    return {arm: f"C{i}" if len(arms) <= 10 else cmap(i % 20) for i, arm in enumerate(arms)}


def plot_arms(study, results, path):
    """Grouped bars of the mean AP per size bin and arm, ± std error bars, one dot per seed."""
    metrics = [m for m in study["metrics"] if "/" not in m and m not in ("AP50", "AP75")]
    arms = list(study["arms"])
    colors = _arm_colors(arms)
    fig, ax = figure(1.2 * len(metrics) + 4, 4.2)
    series = []
    for arm in arms:
        summary = study["arms"][arm]["summary"]
        means = [summary[m]["mean"] if m in summary else 0 for m in metrics]
        stds = [summary[m]["std"] or 0 if m in summary else 0 for m in metrics]
        series.append((means, {"yerr": stds, "capsize": 3, "color": colors[arm], "alpha": 0.85,
                               "label": f"{arm} (n={len(results[arm])})"}))
    for arm, (positions, _) in zip(arms, grouped_bars(ax, metrics, series)):
        for position, metric in zip(positions, metrics):
            seeds = [r[metric] for r in results[arm].values() if r.get(metric) is not None]
            ax.plot([position] * len(seeds), seeds, "k.", markersize=3)
    ax.set_ylabel("AP (%), mean ± std over seeds")
    ax.set_title("AP by object size per arm (dots: single seeds)")
    legend_beside(ax)
    save_png(fig, path)


def _panel_limit(diffs):
    """Half-width of a forest panel: every mean and most intervals fit; the widest ones (about
    the top fifth, e.g. an arm with two seeds) are clipped rather than squeezing the others."""
    means = [abs(d["mean"]) for d in diffs]
    extents = sorted(max(abs(d["low"]), abs(d["high"])) for d in diffs if d["low"] is not None)
    kept = extents[math.ceil(0.8 * len(extents)) - 1] if extents else 0.0
    return 1.15 * max([kept, *means, 0.5])


def plot_differences(study, path):
    """Forest plots of each arm - baseline (mean paired difference and its CI), one panel per
    metric, arms top to bottom; an interval wider than its panel ends in an arrow."""
    metrics = [m for m in study["metrics"] if "/" not in m]
    arms = list(study["differences"])
    colors = _arm_colors(list(study["arms"]))
    cols = min(4, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    fig, axes = figure(3.3 * cols, rows * (0.3 * len(arms) + 1.2) + 0.6, nrows=rows, ncols=cols, squeeze=False,
                       sharey=True)
    for ax, metric in zip(axes.flat, metrics):
        diffs = {i: study["differences"][arm][metric] for i, arm in enumerate(arms) if metric in study["differences"][arm]}
        limit = _panel_limit(list(diffs.values()))
        for i, diff in diffs.items():
            color = colors[arms[i]]
            if diff["low"] is not None:
                low, high = max(diff["low"], -limit), min(diff["high"], limit)
                ax.plot([low, high], [i, i], color=color, lw=2)
                for end, clipped, arrow in ((low, diff["low"] < -limit, "<"), (high, diff["high"] > limit, ">")):
                    if clipped:
                        ax.plot(end, i, arrow, color=color)
            ax.plot(diff["mean"], i, "o", color=color, mfc=color if diff["excludes_zero"] else "white")
        ax.axvline(0, color="k", lw=1, ls="--")
        ax.set_xlim(-limit, limit)
        ax.set_title(metric, fontsize=10)
    for ax in axes.flat[len(metrics):]:
        ax.set_visible(False)
    seeds = [max((d["n"] for d in study["differences"][arm].values()), default=0) for arm in arms]
    axes[0][0].set_yticks(range(len(arms)), [f"{arm} (n={n})" for arm, n in zip(arms, seeds)])
    axes[0][0].invert_yaxis()
    level = round(study["confidence"] * 100)
    fig.supxlabel(f"AP difference to {study['baseline']} (points), mean over paired seeds, {level}% t interval")
    fig.suptitle("Paired differences (filled: interval excludes 0; arrow: interval clipped)")
    save_png(fig, path)


def plot_loss_curves(spec, path):
    """Total training loss against iteration: mean over seeds per arm, with the min-max band."""
    fig, ax = figure(8.5, 4)
    colors = _arm_colors([arm.name for arm in spec.arms])
    for arm in spec.arms:
        curves = [_loss_curve(run.output_dir) for run in spec.runs() if run.arm == arm]
        curves = [c for c in curves if c]
        if not curves:
            continue
        iters = sorted(set.intersection(*(set(c) for c in curves)))
        values = np.array([[c[it] for it in iters] for c in curves])
        ax.plot(iters, values.mean(0), color=colors[arm.name], label=f"{arm.name} (n={len(curves)})")
        ax.fill_between(iters, values.min(0), values.max(0), color=colors[arm.name], alpha=0.2)
    ax.set_xlabel("iteration")
    ax.set_ylabel("total loss (Detectron2's 20-iteration median)")
    ax.set_title("Training loss: mean over seeds, band = min-max")
    legend_beside(ax)
    save_png(fig, path)


def _loss_curve(output_dir):
    """``{iteration: total_loss}`` from Detectron2's ``metrics.json`` (JSON lines), or {}."""
    path = os.path.join(output_dir, "metrics.json")
    curve = {}
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                record = json.loads(line)
                if "total_loss" in record:
                    curve[record["iteration"]] = record["total_loss"]
    return curve


def write_study_reports(spec, results, study, output_dir):
    """Writes ``study.json``, ``study.csv``, ``study_ap_by_size.png``, ``study_differences.png``
    and ``study_loss.png`` into ``output_dir``; returns their paths."""
    paths = {
        "json": os.path.join(output_dir, "study.json"),
        "csv": os.path.join(output_dir, "study.csv"),
        "arms": os.path.join(output_dir, "study_ap_by_size.png"),
        "differences": os.path.join(output_dir, "study_differences.png"),
        "loss": os.path.join(output_dir, "study_loss.png"),
    }
    with atomic_open(paths["json"], "w") as f:
        json.dump({**study, "runs": results}, f, indent=2)
    _write_csv(study, paths["csv"])
    plot_arms(study, results, paths["arms"])
    if study["differences"]:
        plot_differences(study, paths["differences"])
    else:
        del paths["differences"]
    plot_loss_curves(spec, paths["loss"])
    return paths
