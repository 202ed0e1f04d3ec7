"""A schedule sweep's results: each arm's paired difference against the baseline arm at every
schedule length, as a log / markdown table, ``sweep.json`` / ``sweep.csv`` and one chart
(difference vs schedule length with its interval, one panel per key metric).

Each schedule length is an ordinary study (:func:`lip_lab.study.aggregate` of its runs); this
module only lines those studies up."""
import csv
import json
import os

import numpy as np
from matplotlib.ticker import FixedLocator, NullLocator

from ..utils.atomic import atomic_open
from ..utils.table import format_table
from ..utils.plot import figure, save_png
from .report import _arm_colors, _difference, _mean_std

__all__ = [
    "KEY_METRICS", "aggregate_sweep", "format_sweep_table", "format_sweep_counts", "plot_sweep", "write_sweep_reports",
]

KEY_METRICS = ("AP", "AP50", "AP<16", "APs")
"""The chart's panels (those a study has)."""


def aggregate_sweep(studies):
    """``{schedule length: study}`` (each from :func:`lip_lab.study.aggregate`, same arms and
    baseline) -> ``{"baseline", "confidence", "schedules", "metrics", "arms", "summary": {arm:
    {metric: {N: Summary dict}}}, "differences": {arm: {metric: {N: PairedDifference dict}}},
    "seeds": {arm: {N: [seeds]}}, "no_detections": {arm: {N: [seeds]}}}`` with ``N`` the
    schedule length in iterations (a JSON key: a string once written)."""
    schedules = sorted(studies)
    first = studies[schedules[0]]
    arms = list(first["arms"])
    metrics = []
    for n in schedules:
        metrics += [m for m in studies[n]["metrics"] if m not in metrics]
    out = {
        "baseline": first["baseline"], "confidence": first["confidence"], "schedules": schedules,
        "metrics": metrics, "arms": arms, "summary": {}, "differences": {}, "seeds": {}, "no_detections": {},
    }
    for arm in arms:
        out["seeds"][arm] = {n: studies[n]["arms"][arm]["seeds"] for n in schedules}
        out["no_detections"][arm] = {n: studies[n]["arms"][arm].get("no_detections", []) for n in schedules}
        out["summary"][arm] = {
            m: {n: studies[n]["arms"][arm]["summary"][m]
                for n in schedules if m in studies[n]["arms"][arm]["summary"]}
            for m in metrics
        }
        if arm != out["baseline"]:
            out["differences"][arm] = {
                m: {n: studies[n]["differences"][arm][m]
                    for n in schedules if m in studies[n]["differences"].get(arm, {})}
                for m in metrics
            }
    return out


def _with_n(diff):
    if diff is None:
        return "absent"
    text = _difference(diff)
    return text if diff["low"] is None else f"{text} (n={diff['n']})"


def format_sweep_table(sweep, metrics=None):
    """Pipe table, one row per metric and schedule length: each arm's mean ± std, then each arm
    minus the baseline paired by seed with its t interval and seed count (``*``: the interval
    excludes 0). ``metrics``: default, all but the per-category ones."""
    metrics = metrics or [m for m in sweep["metrics"] if "/" not in m]
    base, arms = sweep["baseline"], sweep["arms"]
    others = [a for a in arms if a != base]
    level = round(sweep["confidence"] * 100)
    headers = ["metric", "iterations"] + list(arms) + [f"{a} - {base} [{level}% CI]" for a in others]
    rows = []
    for metric in metrics:
        for n in sweep["schedules"]:
            row = [metric, str(n)] + [_mean_std(sweep["summary"][a][metric].get(n)) for a in arms]
            row += [_with_n(sweep["differences"][a][metric].get(n)) for a in others]
            rows.append(row)
    return format_table(headers, rows)


def format_sweep_counts(sweep):
    """Pipe table: per schedule length and arm, the finished seeds and the runs without any
    detection (counted as AP 0)."""
    headers = ["iterations"] + [f"{a}: seeds (without detections)" for a in sweep["arms"]]
    rows = [
        [str(n)] + [f"{len(sweep['seeds'][a][n])} ({len(sweep['no_detections'][a][n])})" for a in sweep["arms"]]
        for n in sweep["schedules"]
    ]
    return format_table(headers, rows)


def plot_sweep(sweep, path, metrics=KEY_METRICS):
    """One panel per key metric: each non-baseline arm's mean paired difference to the baseline
    against the schedule length (log axis), with its t interval as an error bar (filled marker:
    the interval excludes 0; hollow: it does not, or one seed gives no interval)."""
    metrics = [m for m in metrics if m in sweep["metrics"]] or [m for m in sweep["metrics"] if "/" not in m][:4]
    others = list(sweep["differences"])
    colors = _arm_colors(sweep["arms"])
    schedules = sweep["schedules"]
    fig, axes = figure(3.6 * len(metrics) + 0.6, 4.0, nrows=1, ncols=len(metrics), squeeze=False)
    axes = axes[0]
    spread = 1.06 if len(schedules) > 1 and schedules[-1] / schedules[0] > 1.5 else 1.02
    for ax, metric in zip(axes, metrics):
        for i, arm in enumerate(others):
            diffs = sweep["differences"][arm][metric]
            shift = spread ** (i - (len(others) - 1) / 2)  # side by side, not on top of each other
            xs = [n * shift for n in schedules if n in diffs]
            if not xs:
                continue
            points = [diffs[n] for n in schedules if n in diffs]
            means = np.array([d["mean"] for d in points])
            lows = np.array([d["mean"] if d["low"] is None else d["low"] for d in points])
            highs = np.array([d["mean"] if d["high"] is None else d["high"] for d in points])
            seeds = sorted({d["n"] for d in points})
            label = f"{arm} (n={seeds[0]})" if len(seeds) == 1 else f"{arm} (n={seeds[0]}-{seeds[-1]})"
            ax.errorbar(xs, means, yerr=[means - lows, highs - means], color=colors[arm], marker="", capsize=4,
                        lw=1.5, label=label if ax is axes[0] else None)
            for x, d in zip(xs, points):
                ax.plot(x, d["mean"], "o", color=colors[arm], mfc=colors[arm] if d["excludes_zero"] else "white")
        ax.axhline(0, color="k", lw=1, ls="--")
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator(schedules))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([str(n) for n in schedules])
        if len(schedules) == 1:
            ax.set_xlim(schedules[0] / 1.5, schedules[0] * 1.5)
        else:
            ax.set_xlim(schedules[0] / 1.25, schedules[-1] * 1.25)
        ax.set_xlabel("schedule (iterations, SOLVER.MAX_ITER)")
        ax.set_title(metric, fontsize=10)
    level = round(sweep["confidence"] * 100)
    axes[0].set_ylabel(f"arm - {sweep['baseline']} (AP points)")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Difference to {sweep['baseline']} vs schedule length: mean over paired seeds, {level}% t interval "
                 "(filled: excludes 0)", fontsize=11)
    save_png(fig, path)


def _write_csv(sweep, path):
    fields = ("kind", "arm", "metric", "iterations", "n", "mean", "std", "low", "high", "excludes_zero",
              "no_detections")
    with atomic_open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, restval="", extrasaction="ignore")
        writer.writeheader()
        for arm in sweep["arms"]:
            for metric, by_n in sweep["summary"][arm].items():
                for n, summary in by_n.items():
                    writer.writerow({"kind": "summary", "arm": arm, "metric": metric, "iterations": n, **summary,
                                     "no_detections": len(sweep["no_detections"][arm][n])})
        for arm, diffs in sweep["differences"].items():
            for metric, by_n in diffs.items():
                for n, diff in by_n.items():
                    writer.writerow({"kind": f"{arm} - {sweep['baseline']}", "arm": arm, "metric": metric,
                                     "iterations": n, **diff})


def write_sweep_reports(sweep, output_dir, header=""):
    """Writes ``sweep.json``, ``sweep.csv``, ``sweep.md`` (``header``, then the tables) and
    ``sweep_differences.png`` into ``output_dir``; returns their paths."""
    paths = {kind: os.path.join(output_dir, name) for kind, name in (
        ("json", "sweep.json"), ("csv", "sweep.csv"), ("markdown", "sweep.md"), ("chart", "sweep_differences.png"))}
    with atomic_open(paths["json"], "w") as f:
        json.dump(sweep, f, indent=2)
    _write_csv(sweep, paths["csv"])
    with atomic_open(paths["markdown"], "w") as f:
        f.write(f"{header}\n\n" if header else "")
        f.write(f"{format_sweep_table(sweep)}\n\nSeeds per arm and schedule (runs without detections, counted as "
                f"AP 0):\n\n{format_sweep_counts(sweep)}\n\nAll metrics, per-category ones included:\n\n"
                f"{format_sweep_table(sweep, sweep['metrics'])}\n")
    plot_sweep(sweep, paths["chart"])
    return paths
