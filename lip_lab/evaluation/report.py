"""AP-by-size reports: log tables, JSON, CSV and a PNG bar chart, for one run or several side by side.

``runs`` is ``{run label: SizeAP}`` (see :func:`lip_lab.evaluation.evaluate_by_size`).
"""
import csv
import json
import os

from ..utils.atomic import atomic_open
from ..utils.plot import figure, grouped_bars, save_png
from ..utils.table import format_table
from .size_ap import SIZE_RANGES, SMALL_METRICS

__all__ = ["METRIC_ORDER", "format_size_table", "format_small_category_table", "write_size_reports", "plot_size_ap"]

METRIC_ORDER = ("AP", "AP50", "AP75") + tuple(name for name, _, _ in SIZE_RANGES)
ABSENT = "absent"  # a size range with no ground truth: no AP to report
_BIN_HINTS = {name: f"{lo ** 0.5:.0f}-{hi ** 0.5:.0f}px" if hi < 1e9 else f">={lo ** 0.5:.0f}px" for name, _, (lo, hi) in SIZE_RANGES}


def _fmt(value):
    return ABSENT if value is None else f"{value:.2f}"


def format_size_table(runs):
    """Rows: AP, AP50, AP75 and each size bin (with its side range and #GT); one column per run."""
    first = next(iter(runs.values()))
    rows = []
    for metric in METRIC_ORDER:
        size = _BIN_HINTS.get(metric, "all")
        num_gt = first["num_gt"].get(metric, sum(first["num_gt"][m] for m in ("APs", "APm", "APl")))
        rows.append([metric, size, num_gt] + [_fmt(r["metrics"][metric]) for r in runs.values()])
    if len(runs) == 2:
        a, b = (r["metrics"] for r in runs.values())
        for row, metric in zip(rows, METRIC_ORDER):
            both = a[metric] is not None and b[metric] is not None
            row.append(f"{a[metric] - b[metric]:+.2f}" if both else ABSENT)
    labels = list(runs)
    headers = ["metric", "object side", "#GT"] + labels + ([f"{labels[0]} - {labels[1]}"] if len(runs) == 2 else [])
    return format_table(headers, rows)


def format_small_category_table(runs):
    """Per-category AP (all sizes) and AP on the small bins; one column group per run."""
    first = next(iter(runs.values()))
    metrics = ("AP",) + SMALL_METRICS
    rows = [
        [cat] + [_fmt(r["per_category"][cat][m]) for r in runs.values() for m in metrics]
        for cat in first["per_category"]
    ]
    headers = ["category"] + [f"{m} ({label})" if len(runs) > 1 else m for label in runs for m in metrics]
    return format_table(headers, rows)


def plot_size_ap(runs, path, title="AP by object size"):
    """Grouped bars: one group per size bin, one bar per run; bins without ground truth are marked."""
    metrics = ("AP",) + tuple(name for name, _, _ in SIZE_RANGES)
    fig, ax = figure(1.3 * len(metrics) + 2, 4)
    values = [[run["metrics"][m] for m in metrics] for run in runs.values()]
    series = [([v or 0 for v in run_values], {"label": label}) for label, run_values in zip(runs, values)]
    placed = grouped_bars(ax, [f"{m}\n{_BIN_HINTS.get(m, 'all')}" for m in metrics], series)
    for (_, bars), run_values in zip(placed, values):
        for bar, value in zip(bars, run_values):
            text = "no GT" if value is None else f"{value:.1f}"
            ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("AP (%)  IoU 0.50:0.95")
    ax.set_title(title)
    ax.legend()
    ax.set_ylim(0, max(5, max((r["metrics"][m] or 0) for r in runs.values() for m in metrics) * 1.15))
    save_png(fig, path)


def write_size_reports(runs, output_dir, stem="ap_by_size"):
    """Writes ``<stem>.json``, ``<stem>.csv`` and ``<stem>.png`` into ``output_dir``; returns their paths."""
    paths = {ext: os.path.join(output_dir, f"{stem}.{ext}") for ext in ("json", "csv", "png")}
    with atomic_open(paths["json"], "w") as f:
        json.dump(runs, f, indent=2)
    with atomic_open(paths["csv"], "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["category", "metric", *runs])  # AP in %; empty cell: no ground truth
        for metric in METRIC_ORDER:
            writer.writerow(["all", metric, *(_csv(r["metrics"][metric]) for r in runs.values())])
        first = next(iter(runs.values()))
        for cat, cat_metrics in first["per_category"].items():
            for metric in cat_metrics:
                writer.writerow([cat, metric, *(_csv(r["per_category"][cat][metric]) for r in runs.values())])
    plot_size_ap(runs, paths["png"])
    return paths


def _csv(value):
    return "" if value is None else f"{value:.4f}"
