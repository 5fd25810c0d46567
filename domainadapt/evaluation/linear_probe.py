"""Linear probe: how much of a task a frozen representation carries, read without fine-tuning noise.

A logistic regression on standardised frozen features (Alain & Bengio 2016, "Understanding intermediate layers
using linear classifier probes"; the linear evaluation protocol of Chen et al. 2020, SimCLR §4). Few-label
fine-tuning scores vary by points between seeds; the probe is deterministic given the features, so it separates
"the continued pretraining changed what the encoder knows" from "this seed's fine-tuning went well". scikit-learn
does the fitting (lbfgs, multinomial)."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


class LinearProbeError(ValueError):
    """Bad input to the probe; the message names the problem."""


def _as_numpy(a: torch.Tensor | np.ndarray, what: str) -> np.ndarray:
    out = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    if not np.isfinite(out.astype(float)).all():
        raise LinearProbeError(f"linear probe: {what} has non-finite entries")
    return out


def linear_probe(train_features, train_labels, test_features, test_labels, *, C: float = 1.0,
                 max_iter: int = 5000) -> dict[str, float]:
    """Fit on (train_features, train_labels), score on the test set: {"acc", "macro_f1"} in [0, 1].
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
    return {"acc": float(accuracy_score(yte, pred)),
            "macro_f1": float(f1_score(yte, pred, average="macro", zero_division=0,
                                         labels=np.unique(np.concatenate([ytr, yte]))))}
