"""Continual-learning metrics from the accuracy matrix R[i, j] = accuracy on task j after training task i
(T×T; entries above the diagonal, tasks not trained yet, may be NaN).

  average accuracy  ACC = mean_j R[T−1, j]
  backward transfer BWT = mean_{j<T−1} (R[T−1, j] − R[j, j])       (Lopez-Paz & Ranzato 2017, GEM, eq. 3)
  forgetting        f_j = max_{j≤l≤T−2} R[l, j] − R[T−1, j], j < T−1  (Chaudhry et al. 2018, RWalk, sec. 4)
Forgetting is measured after learning: the max in f_j runs over the rows from the one where task j was learned
(l = j) to the one before the last, never over rows l < j. In Chaudhry et al. (2018, "Riemannian Walk for
Incremental Learning", ECCV) a_{l,j} is the accuracy on task j after incremental training up to task l and exists
only for j ≤ l, so their max over l < k is this one. Entries above the diagonal (zero-shot accuracy on a task not
trained yet, which some experiments record) are ignored by every metric here: counting them would report a drop
from an accuracy the model never had after learning the task.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


class AccuracyMatrixError(ValueError):
    """An accuracy matrix that is not square, too small, or missing entries a metric needs."""


def _matrix(R: Any, min_tasks: int, metric: str) -> np.ndarray:
    try:
        R = np.asarray(R, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise AccuracyMatrixError(f"{metric}: the accuracy matrix is not a numeric T×T array ({err})") from None
    if R.ndim != 2 or R.shape[0] != R.shape[1]:
        raise AccuracyMatrixError(f"{metric}: the accuracy matrix must be square T×T, got shape {R.shape}")
    if len(R) < min_tasks:
        raise AccuracyMatrixError(f"{metric} needs at least {min_tasks} tasks, got a {len(R)}×{len(R)} matrix")
    lower = np.tril(np.ones_like(R, dtype=bool))
    bad = np.argwhere(lower & ~np.isfinite(R))
    if len(bad):
        i, j = bad[0]
        raise AccuracyMatrixError(f"{metric}: R[{i}, {j}] (task {j} after task {i}) is missing or not finite; "
                                  "entries on and below the diagonal are needed")
    return R


def average_accuracy(R: Any) -> float:
    """mean_j R[T−1, j]: accuracy over all tasks after the last one."""
    return float(_matrix(R, 1, "average accuracy")[-1].mean())


def backward_transfer(R: Any) -> float:
    """mean_{j<T−1} (R[T−1, j] − R[j, j]); negative means forgetting (Lopez-Paz & Ranzato 2017)."""
    R = _matrix(R, 2, "backward transfer")
    T = len(R)
    return float(np.mean(R[-1, : T - 1] - np.diag(R)[: T - 1]))


def forgetting(R: Any) -> np.ndarray:
    """Per earlier task j < T−1: max_{j≤l≤T−2} R[l, j] − R[T−1, j]; shape (T−1,).

    The after-learning forgetting of Chaudhry et al. 2018 (RWalk, ECCV, sec. 4): the best accuracy on task j
    from the row where it was learned (l = j) onward, minus the final one. Rows l < j (task j not trained yet) are
    never used, so a high zero-shot entry above the diagonal does not count as forgetting.
    """
    R = _matrix(R, 2, "forgetting")
    T = len(R)
    return np.array([R[j : T - 1, j].max() - R[-1, j] for j in range(T - 1)])


def average_forgetting(R: Any) -> float:
    """Mean of `forgetting(R)` over the T−1 earlier tasks."""
    return float(forgetting(R).mean())


class AccuracyMatrix:
    """R filled one evaluation at a time: `record(i, j, acc)` after training task i, evaluated on task j."""

    def __init__(self, num_tasks: int, names: Sequence[str] | None = None) -> None:
        if num_tasks < 1:
            raise AccuracyMatrixError(f"an accuracy matrix needs at least 1 task, got {num_tasks}")
        if names is not None and len(names) != num_tasks:
            raise AccuracyMatrixError(f"{len(names)} task names for {num_tasks} tasks")
        self.names = [str(n) for n in names] if names is not None else [f"task{t}" for t in range(num_tasks)]
        self._R = np.full((num_tasks, num_tasks), np.nan)

    @property
    def num_tasks(self) -> int:
        return len(self._R)

    def record(self, i: int, j: int, acc: float) -> None:
        T = self.num_tasks
        if not (0 <= i < T and 0 <= j < T):
            raise AccuracyMatrixError(f"record({i}, {j}): task indices must be in [0, {T})")
        if not np.isfinite(acc):
            raise AccuracyMatrixError(f"record({i}, {j}): accuracy must be finite, got {acc}")
        self._R[i, j] = float(acc)

    @property
    def values(self) -> np.ndarray:
        return self._R.copy()

    def upto(self, i: int) -> np.ndarray:
        """The (i+1)×(i+1) matrix after task i (metrics so far)."""
        return self._R[: i + 1, : i + 1].copy()

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame(self._R, index=[f"after {n}" for n in self.names], columns=self.names)

    def summary(self, upto: int | None = None) -> dict[str, Any]:
        """ACC, and for 2+ tasks BWT, mean forgetting and per-task forgetting, over tasks 0..upto (default all)."""
        R = self._R if upto is None else self.upto(upto)
        out: dict[str, Any] = {"tasks": len(R), "average_accuracy": average_accuracy(R)}
        if len(R) >= 2:
            per_task = forgetting(R)
            out.update(backward_transfer=backward_transfer(R), average_forgetting=float(per_task.mean()),
                       forgetting={self.names[j]: float(f) for j, f in enumerate(per_task)})
        return out
