"""How well a validator's score tracks target accuracy over a set of checkpoints, and what it selects.

- `weighted_spearman`: Musgrave, Belongie & Lim 2022 ("Benchmarking Validation Methods for Unsupervised Domain
  Adaptation", sec. 4): Spearman's correlation (Pearson's on ranks) in which checkpoint i weighs
  w_i = (r_i / r_max)^p, r_i its dense rank by validator score, p = 2; so the ranking among the checkpoints a
  validator scores high (the ones it could select) counts most. Written here (numpy, a dozen lines) because the
  one published implementation depends on a small unmaintained package (WeightedCorr), whose weighted ranks
  differ from the plain ranks used here; the p and the rank weights are the paper's.
- `bootstrap_interval`: percentile interval of a statistic over checkpoints resampled with replacement (seeded).
- `selection_table`: per group of runs (a method on a pair), the target accuracy of the checkpoint each validator
  selects within each run, next to the run's last checkpoint and its oracle (best by target test accuracy: a
  bound that uses target labels, reported apart and never used for anything else), averaged over the runs; or,
  with several runs per unit (the learning rates of one seed), the checkpoint and the hyper-parameter at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from scipy.stats import rankdata


def weighted_spearman(scores: Sequence[float], accuracies: Sequence[float], power: float = 2.0) -> float:
    """Weighted Spearman correlation of validator `scores` with `accuracies` (NaN when either is constant)."""
    s, a = np.asarray(scores, dtype=np.float64), np.asarray(accuracies, dtype=np.float64)
    if s.shape != a.shape or s.ndim != 1 or len(s) < 2:
        raise ValueError(f"weighted_spearman needs two 1-D sequences of one length >= 2, got {s.shape} and {a.shape}")
    if not (np.isfinite(s).all() and np.isfinite(a).all()):
        raise ValueError("weighted_spearman: scores and accuracies must be finite")
    dense = rankdata(s, method="dense")
    w = (dense / dense.max()) ** power
    x, y = rankdata(s), rankdata(a)
    mx, my = np.average(x, weights=w), np.average(y, weights=w)
    cov = np.average((x - mx) * (y - my), weights=w)
    vx, vy = np.average((x - mx) ** 2, weights=w), np.average((y - my) ** 2, weights=w)
    return float(cov / np.sqrt(vx * vy)) if vx > 0 and vy > 0 else float("nan")


def bootstrap_interval(statistic: Callable[[np.ndarray], float], n: int, *, resamples: int = 1000,
                       confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of `statistic(index)` over `resamples` draws of n indices with replacement (NaN draws,
    e.g. a constant resample, are left out)."""
    rng = np.random.default_rng(seed)
    values = np.array([statistic(rng.integers(0, n, n)) for _ in range(resamples)])
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return float("nan"), float("nan")
    tail = 100 * (1 - confidence) / 2
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))


def correlation_table(frame: pd.DataFrame, validators: Sequence[str], *, accuracy: str = "target_acc",
                      resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """One row per validator: weighted Spearman with `accuracy` over every checkpoint of `frame` (one row per
    checkpoint, a column per validator score), its bootstrap interval, and plain Spearman."""
    rows = []
    acc = frame[accuracy].to_numpy(dtype=np.float64)
    for name in validators:
        score = frame[name].to_numpy(dtype=np.float64)
        ok = np.isfinite(score) & np.isfinite(acc)
        s, a = score[ok], acc[ok]
        low, high = bootstrap_interval(lambda i: _safe_wsp(s[i], a[i]), len(s), resamples=resamples, seed=seed)
        rows.append({"validator": name, "weighted_spearman": _safe_wsp(s, a), "ci_low": low, "ci_high": high,
                     "spearman": float(pd.Series(s).corr(pd.Series(a), method="spearman")), "checkpoints": int(ok.sum())})
    return pd.DataFrame(rows).set_index("validator")


def _safe_wsp(s: np.ndarray, a: np.ndarray) -> float:
    return weighted_spearman(s, a) if len(s) >= 2 else float("nan")


def selection_table(frame: pd.DataFrame, validators: Sequence[str], *, group: Sequence[str], run: str = "run",
                    step: str = "step", accuracy: str = "target_acc") -> pd.DataFrame:
    """Checkpoint selection, per `group` (e.g. pair and method), averaged over the group's runs: target accuracy
    of the checkpoint each validator scores highest within a run, of the run's last checkpoint, and of the oracle
    (the run's highest target accuracy: it reads target labels, a bound reported apart).

    `run` names the column whose values are the units a validator chooses within. A run id chooses a checkpoint;
    a column shared by several runs (e.g. the seed, with the grid's learning rates as the runs) chooses a
    checkpoint AND a hyper-parameter at once, as `domainadapt select` does across runs. With several runs in a
    unit, "last" is the mean accuracy of their last checkpoints: what a hyper-parameter picked at random gives."""
    per_run = []
    for key, part in frame.groupby([*group, run], sort=True):
        row = dict(zip([*group, run], key))
        row["last"] = float(part.loc[part[step] == part[step].max(), accuracy].mean())
        row["oracle"] = float(part[accuracy].max())
        for name in validators:
            scored = part[np.isfinite(part[name].to_numpy(dtype=np.float64))]
            row[name] = float(scored.loc[scored[name].idxmax(), accuracy]) if len(scored) else float("nan")
        per_run.append(row)
    table = pd.DataFrame(per_run).groupby(list(group), sort=True)[["last", "oracle", *validators]].mean()
    table["runs"] = pd.DataFrame(per_run).groupby(list(group), sort=True).size()
    return table
