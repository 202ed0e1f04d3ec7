"""Statistics of a study: mean +- std per arm and paired differences with a t interval."""
import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

__all__ = ["Summary", "PairedDifference", "summarize", "paired_difference"]


@dataclass(frozen=True)
class Summary:
    """Mean and sample standard deviation (ddof 1; None for fewer than 2 values) of n values."""

    n: int
    mean: float
    std: float | None

    def as_dict(self):
        return asdict(self)


@dataclass(frozen=True)
class PairedDifference:
    """Mean of ``arm - baseline`` over n paired seeds with its two-sided t confidence interval.

    ``low``/``high`` are None for fewer than two pairs (no spread to estimate).
    """

    n: int
    mean: float
    std: float | None
    low: float | None
    high: float | None
    confidence: float

    @property
    def excludes_zero(self):
        """True when the whole interval lies on one side of 0 (significant at 1 - confidence)."""
        return self.low is not None and (self.low > 0 or self.high < 0)

    def as_dict(self):
        return {**asdict(self), "excludes_zero": self.excludes_zero}


def summarize(values):
    """:class:`Summary` of a sequence of floats (at least one)."""
    values = np.asarray(values, dtype=float)
    std = float(values.std(ddof=1)) if values.size > 1 else None
    return Summary(int(values.size), float(values.mean()), std)


def paired_difference(arm, baseline, confidence=0.95):
    """Mean paired difference ``arm[i] - baseline[i]`` with a Student-t interval.

    Args:
        arm, baseline: equal-length sequences, element i of both from the same seed.
        confidence: coverage of the interval, e.g. 0.95.
    """
    diff = np.asarray(arm, dtype=float) - np.asarray(baseline, dtype=float)
    if diff.ndim != 1 or diff.size == 0:
        raise ValueError("paired_difference: needs two equal-length, non-empty sequences")
    summary = summarize(diff)
    if summary.std is None:
        return PairedDifference(summary.n, summary.mean, None, None, None, confidence)
    half = float(stats.t.ppf(0.5 + confidence / 2, df=summary.n - 1)) * summary.std / math.sqrt(summary.n)
    return PairedDifference(summary.n, summary.mean, summary.std, summary.mean - half, summary.mean + half, confidence)
