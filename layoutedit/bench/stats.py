"""Confidence intervals for the table: is a difference between two rows real or noise?

With 16 edits per row, two settings 0.03 apart in layout IoU can be the same method on
other cases. Every variant edits the same cases, so rows are compared *paired*: the
bootstrap resamples edits (with replacement) and recomputes the mean of the per-edit
differences; the 2.5 % and 97.5 % quantiles of those means are the 95 % interval. A
difference whose interval excludes zero is marked as real.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

RESAMPLES = 2000
LEVEL = 0.95
MIN_SAMPLES = 5
"""Fewer values than this give no interval (NaN bounds): resampling one or two edits says
nothing about noise, and would mark every difference as real."""


@dataclass(frozen=True)
class Interval:
    """A mean and its bootstrap interval."""

    mean: float
    low: float
    high: float

    @property
    def excludes_zero(self) -> bool:
        """Whether the interval lies wholly on one side of zero."""
        return self.low > 0 or self.high < 0


def bootstrap_mean(
    values: Sequence[float], *, resamples: int = RESAMPLES, level: float = LEVEL, seed: int = 0
) -> Interval:
    """Mean of `values` (NaNs dropped) with its percentile-bootstrap interval.

    Returns:
        An `Interval`; all NaN when no value is finite, NaN bounds for fewer than
        `MIN_SAMPLES` values.
    """
    data = np.asarray([v for v in values if np.isfinite(v)], dtype=np.float64)
    nan = float("nan")
    if data.size == 0:
        return Interval(nan, nan, nan)
    if data.size < MIN_SAMPLES:
        return Interval(float(data.mean()), nan, nan)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, data.size, size=(resamples, data.size))
    means = data[picks].mean(axis=1)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return Interval(float(data.mean()), float(low), float(high))


def paired_difference(
    a: Sequence[float], b: Sequence[float], *, resamples: int = RESAMPLES, seed: int = 0
) -> Interval:
    """Mean of a_i - b_i over pairs where both are finite, with its bootstrap interval.

    Args:
        a, b: per-edit values of two rows on the same edits, in the same order.
    """
    if len(a) != len(b):
        raise ValueError(f"{len(a)} vs {len(b)} values: not paired")
    diffs = [x - y for x, y in zip(a, b, strict=True) if np.isfinite(x) and np.isfinite(y)]
    return bootstrap_mean(diffs, resamples=resamples, seed=seed)
