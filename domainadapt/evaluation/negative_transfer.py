"""The negative-transfer gap (Wang, Dai, Póczos & Carbonell 2019, "Characterizing and Avoiding Negative
Transfer", CVPR, sec. 3, Definition 2):

    NTG = ε_T(θ(S, T)) − ε_T(θ(∅, T))

the target error of the model that used the source, minus the target error of the same algorithm given the
target data only. NTG > 0 is negative transfer. Over seeds it is a difference of means with a t-interval:
paired by seed when both arms ran the same seeds (interval of the per-seed differences: the seed fixes the
target split and initialisation shared by both arms, so pairing removes that variance), else Welch's
unequal-variance interval (Welch 1947) on the two independent samples.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .stats import mean_std

Errors = Mapping[Any, float] | Sequence[float]


@dataclass(frozen=True)
class TransferGap:
    """NTG with its interval. `negative`: the whole interval lies above 0 (significant negative transfer);
    `positive`: it lies below 0 (the source helped)."""

    gap: float
    low: float
    high: float
    confidence: float
    paired: bool
    n_transfer: int
    n_target: int
    df: float

    @property
    def negative(self) -> bool:
        return self.low > 0

    @property
    def positive(self) -> bool:
        return self.high < 0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "negative": self.negative, "positive": self.positive}


def _values(x: Errors, what: str, accuracies: bool) -> tuple[np.ndarray, list[Any] | None]:
    if isinstance(x, Mapping):
        seeds: list[Any] | None = list(x)
        arr = np.asarray([x[s] for s in seeds], dtype=np.float64)
    else:
        seeds, arr = None, np.asarray(list(x), dtype=np.float64)
    if arr.ndim != 1 or len(arr) < 2:
        raise ValueError(f"{what}: an interval over seeds needs at least 2 values, got {len(arr)}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what}: values must be finite")
    return (1.0 - arr if accuracies else arr), seeds


def _t_half(std_err: float, df: float, confidence: float) -> float:
    from scipy import stats

    if std_err == 0.0:
        return 0.0
    return float(stats.t.ppf(0.5 + confidence / 2, df=df) * std_err)


def negative_transfer_gap(
    transfer: Errors,
    target_only: Errors,
    *,
    confidence: float = 0.95,
    paired: bool | None = None,
    accuracies: bool = False,
) -> TransferGap:
    """NTG = mean ε_T(source→target) − mean ε_T(target only), with a `confidence` t-interval over seeds.

    Each argument is {seed: target error} or a list of errors (`accuracies=True`: target accuracies, ε = 1 − acc).
    paired=None pairs when both are mappings over the same seeds, else uses Welch; paired=True demands same-seed
    mappings; paired=False forces Welch."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    a, seeds_a = _values(transfer, "transfer", accuracies)
    b, seeds_b = _values(target_only, "target only", accuracies)
    same_seeds = seeds_a is not None and seeds_b is not None and set(seeds_a) == set(seeds_b)
    if paired and not same_seeds:
        raise ValueError("paired=True needs both arms as {seed: value} mappings over the same seeds, got "
                         f"{seeds_a} and {seeds_b}")
    if paired is None:
        paired = same_seeds
    if paired:
        assert seeds_a is not None and seeds_b is not None
        order = {s: i for i, s in enumerate(seeds_b)}
        diffs = a - b[[order[s] for s in seeds_a]]
        gap, std, n = mean_std(diffs)
        df = float(n - 1)
        half = _t_half(std / np.sqrt(n), df, confidence)
    else:
        ma, sa, na = mean_std(a)
        mb, sb, nb = mean_std(b)
        gap = ma - mb
        va, vb = sa**2 / na, sb**2 / nb
        se = float(np.sqrt(va + vb))
        df = float((va + vb) ** 2 / (va**2 / (na - 1) + vb**2 / (nb - 1))) if se > 0 else float(na + nb - 2)
        half = _t_half(se, df, confidence)
    return TransferGap(gap=float(gap), low=float(gap - half), high=float(gap + half), confidence=confidence,
                       paired=bool(paired), n_transfer=len(a), n_target=len(b), df=df)


def negative_transfer_table(
    frame: Any,
    *,
    arm: str,
    control: str,
    metric: str = "target_test/acc",
    seed: str = "seed",
    by: Sequence[str] = (),
    confidence: float = 0.95,
) -> Any:
    """NTG of every arm against the control, from a runs DataFrame (`report.collect`) holding ACCURACIES in
    `metric`: rows labelled by column `arm` (e.g. a "strategy" column the experiment adds), the control rows
    having `arm == control`; `by` columns (e.g. source, target) are compared separately. One row per
    (by…, arm) with gap, low, high, paired, n_transfer, n_target."""
    import pandas as pd

    missing = [c for c in (arm, metric, seed, *by) if c not in frame.columns]
    if missing:
        raise ValueError(f"negative_transfer_table: columns {missing} are not in the frame")
    rows = []
    groups = frame.groupby(list(by), sort=True) if by else [((), frame)]
    for key, sub in groups:
        key = key if isinstance(key, tuple) else (key,)
        ctrl = sub[sub[arm] == control]
        if ctrl.empty:
            raise ValueError(f"negative_transfer_table: no control rows ({arm} == {control!r}) for {dict(zip(by, key))}")
        for name, part in [(control, ctrl), *sub[sub[arm] != control].groupby(arm, sort=True)]:
            if part[seed].duplicated().any():
                raise ValueError(f"negative_transfer_table: arm {name!r} has two runs of one seed for {dict(zip(by, key))}")
        ctrl_vals = dict(zip(ctrl[seed], ctrl[metric]))
        for label, runs in sub[sub[arm] != control].groupby(arm, sort=True):
            gap = negative_transfer_gap(dict(zip(runs[seed], runs[metric])), ctrl_vals, confidence=confidence,
                                        accuracies=True)
            rows.append({**dict(zip(by, key)), arm: label, **gap.as_dict()})
    return pd.DataFrame(rows)
