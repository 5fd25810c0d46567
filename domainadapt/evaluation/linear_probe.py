"""Linear probe: how much of a task a frozen representation carries, read without fine-tuning noise.

A logistic regression on standardised frozen features (Alain & Bengio 2016, "Understanding intermediate layers
using linear classifier probes"; the linear evaluation protocol of Chen et al. 2020, SimCLR §4). Few-label
fine-tuning scores vary by points between seeds; the probe is deterministic given the features, so it separates
"the continued pretraining changed what the encoder knows" from "this seed's fine-tuning went well". What is left
is the finite test set: `paired_bootstrap_difference` puts an interval on the difference of two probes scored on
the same test entries. scikit-learn does the fitting (lbfgs, multinomial) and the scoring."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


class LinearProbeError(ValueError):
    """Bad input to the probe; the message names the problem."""


@dataclass(frozen=True)
class ProbeResult:
    acc: float
    macro_f1: float
    predictions: np.ndarray  # predicted class of every test example, in order
    labels: np.ndarray  # the test labels


def _as_numpy(a: torch.Tensor | np.ndarray, what: str) -> np.ndarray:
    out = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    if not np.isfinite(out.astype(float)).all():
        raise LinearProbeError(f"linear probe: {what} has non-finite entries")
    return out


def macro_f1(labels: np.ndarray, predictions: np.ndarray, classes: np.ndarray | None = None) -> float:
    """Macro-F1 over `classes` (default: those in labels or predictions); a class never predicted scores 0."""
    classes = np.unique(np.concatenate([labels, predictions])) if classes is None else classes
    return float(f1_score(labels, predictions, average="macro", zero_division=0, labels=classes))


def linear_probe(train_features, train_labels, test_features, test_labels, *, C: float = 1.0,
                 max_iter: int = 5000) -> ProbeResult:
    """Fit on (train_features, train_labels), score on the test set (accuracy and macro-F1 in [0, 1]).
    C is the inverse L2 strength of scikit-learn's LogisticRegression."""
    xtr, ytr = _as_numpy(train_features, "train_features"), _as_numpy(train_labels, "train_labels")
    xte, yte = _as_numpy(test_features, "test_features"), _as_numpy(test_labels, "test_labels")
    if xtr.ndim != 2 or xte.ndim != 2 or xtr.shape[1] != xte.shape[1]:
        raise LinearProbeError(f"linear probe: features must be N×D with the same D, got {xtr.shape} and {xte.shape}")
    if len(xtr) != len(ytr) or len(xte) != len(yte):
        raise LinearProbeError(f"linear probe: {len(xtr)}/{len(xte)} feature rows but {len(ytr)}/{len(yte)} labels")
    if len(np.unique(ytr)) < 2:
        raise LinearProbeError("linear probe: the training labels hold fewer than 2 classes")
    if not C > 0:
        raise LinearProbeError(f"linear probe: C must be > 0, got {C}")
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    probe.fit(xtr, ytr)
    pred = probe.predict(xte)
    classes = np.unique(np.concatenate([ytr, yte]))
    return ProbeResult(float(accuracy_score(yte, pred)), macro_f1(yte, pred, classes), pred, yte)


def paired_bootstrap_difference(a: ProbeResult, b: ProbeResult, *, n_boot: int = 2000, seed: int = 0,
                                level: float = 0.95) -> tuple[float, float, float]:
    """Macro-F1 of `a` minus that of `b`, scored on the same test entries: (difference, low, high), the interval a
    percentile bootstrap over test entries resampled jointly for both (Efron & Tibshirani 1993, ch. 13)."""
    if a.labels.shape != b.labels.shape or not np.array_equal(a.labels, b.labels):
        raise LinearProbeError("paired bootstrap: the two probes were scored on different test labels")
    if n_boot < 1 or not 0 < level < 1:
        raise LinearProbeError(f"paired bootstrap: need n_boot >= 1 and 0 < level < 1, got {n_boot} and {level}")
    classes = np.unique(np.concatenate([a.labels, a.predictions, b.predictions]))
    g = np.random.default_rng(seed)
    n = len(a.labels)
    diffs = np.empty(n_boot)
    for k in range(n_boot):
        i = g.integers(0, n, n)
        diffs[k] = macro_f1(a.labels[i], a.predictions[i], classes) - macro_f1(a.labels[i], b.predictions[i], classes)
    tail = 100 * (1 - level) / 2
    return (a.macro_f1 - b.macro_f1, float(np.percentile(diffs, tail)), float(np.percentile(diffs, 100 - tail)))
