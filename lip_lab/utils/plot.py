"""The reports' charts: figures without pyplot (the process's backend is left alone), grouped bars, PNGs."""
import numpy as np
from matplotlib.figure import Figure

from .atomic import atomic_open

__all__ = ["figure", "grouped_bars", "legend_beside", "save_png"]


def figure(width, height, **subplots):
    """A ``width`` x ``height`` inch figure at 120 dpi and its axes (``Figure.subplots(**subplots)``)."""
    fig = Figure(figsize=(width, height), dpi=120)
    return fig, fig.subplots(**subplots)


def legend_beside(ax):
    """The legend to the right of ``ax``, outside it, so that it covers no data however many entries it has."""
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))


def grouped_bars(ax, groups, series):
    """One group of bars per label of ``groups`` (the x ticks), one bar per entry of ``series`` in each.

    Args:
        series: ``[(values, bar keywords), ...]``: one value per group, and ``ax.bar`` keywords
            (``label``, ``color``, ``yerr``, ...) for that series' bars.
    Returns:
        ``[(x positions, bars), ...]``, one per series.
    """
    x = np.arange(len(groups))
    width = 0.8 / len(series)
    placed = []
    for i, (values, bar_keywords) in enumerate(series):
        positions = x - 0.4 + width * (i + 0.5)
        placed.append((positions, ax.bar(positions, values, width, **bar_keywords)))
    ax.set_xticks(x, groups)
    return placed


def save_png(fig, path):
    """Lays ``fig`` out and writes it to ``path`` as PNG, atomically."""
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")
