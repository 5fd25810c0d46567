"""Continual-learning metrics from the accuracy matrix R[i, j] = accuracy on task j after training task i.

Average accuracy = mean_j R[T−1, j]; backward transfer BWT = mean_{j<T−1} (R[T−1, j] − R[j, j])
(Lopez-Paz & Ranzato 2017, GEM, eq. 2–3); forgetting_j = max_{l<T−1} R[l, j] − R[T−1, j]
(Chaudhry et al. 2018, RWalk, eq. 9).
"""

from __future__ import annotations

import numpy as np


def _matrix(R) -> np.ndarray:
    R = np.asarray(R, dtype=np.float64)
    if R.ndim != 2 or R.shape[0] != R.shape[1]:
        raise ValueError(f"the accuracy matrix must be square T×T, got shape {R.shape}")
    return R


def average_accuracy(R) -> float:
    R = _matrix(R)
    return float(R[-1].mean())


def backward_transfer(R) -> float:
    R = _matrix(R)
    if len(R) < 2:
        raise ValueError("backward transfer needs at least 2 tasks")
    return float(np.mean([R[-1, j] - R[j, j] for j in range(len(R) - 1)]))


def forgetting(R) -> np.ndarray:
    """Per earlier task j < T−1: the best accuracy it ever had before the last task minus its final accuracy."""
    R = _matrix(R)
    if len(R) < 2:
        raise ValueError("forgetting needs at least 2 tasks")
    return np.array([R[j : len(R) - 1, j].max() - R[-1, j] for j in range(len(R) - 1)])
