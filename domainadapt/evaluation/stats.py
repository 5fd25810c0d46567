"""Statistics over seeds: mean, sample std (ddof=1, as tables report it) and a t-interval."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """(mean, sample standard deviation with ddof=1, n); std is NaN for a single value."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        raise ValueError("mean_std of no values")
    std = float(arr.std(ddof=1)) if arr.size > 1 else float("nan")
    return float(arr.mean()), std, int(arr.size)


def t_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Student-t interval for the mean over seeds (small n: a normal interval would be too narrow)."""
    from scipy import stats

    mean, std, n = mean_std(values)
    if n < 2:
        raise ValueError("a confidence interval needs at least 2 values")
    half = stats.t.ppf(0.5 + confidence / 2, df=n - 1) * std / np.sqrt(n)
    return mean - half, mean + half
