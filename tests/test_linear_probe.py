"""The linear probe: equal to scikit-learn's pipeline, right on separable and chance on shuffled data, named errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.preprocessing import StandardScaler

from domainadapt.evaluation import LinearProbeError, linear_probe


def _blobs(n_per_class: int, sep: float, seed: int):
    g = np.random.default_rng(seed)
    centers = g.normal(size=(3, 5)) * sep
    y = np.repeat(np.arange(3), n_per_class)
    return centers[y] + g.normal(size=(len(y), 5)), y


def test_probe_separates_well_separated_classes_and_equals_sklearn():
    xtr, ytr = _blobs(20, sep=10.0, seed=0)
    xte, yte = _blobs(50, sep=10.0, seed=0)  # same centres (same seed), fresh noise below
    xte = xte + np.random.default_rng(1).normal(size=xte.shape) * 0.1
    out = linear_probe(torch.as_tensor(xtr, dtype=torch.float32), torch.as_tensor(ytr), xte, yte)
    assert out["acc"] == 1.0 and out["macro_f1"] == 1.0

    xtr, ytr = _blobs(10, sep=1.0, seed=2)
    xte, yte = _blobs(30, sep=1.0, seed=2)
    xte = xte + np.random.default_rng(3).normal(size=xte.shape)
    scaler = StandardScaler().fit(xtr)
    pred = LogisticRegression(C=0.5, max_iter=5000).fit(scaler.transform(xtr), ytr).predict(scaler.transform(xte))
    out = linear_probe(xtr, ytr, xte, yte, C=0.5)
    assert out["acc"] == pytest.approx((pred == yte).mean())
    assert out["macro_f1"] == pytest.approx(f1_score(yte, pred, average="macro"))
    assert 0.34 < out["acc"] < 1.0  # overlapping blobs: better than chance, not perfect


def test_probe_is_at_chance_when_labels_carry_no_signal():
    g = np.random.default_rng(0)
    accs = [linear_probe(g.normal(size=(60, 8)), g.integers(0, 3, 60), g.normal(size=(600, 8)), g.integers(0, 3, 600))["acc"]
            for _ in range(5)]
    assert abs(np.mean(accs) - 1 / 3) < 0.05


def test_probe_bad_input_is_named():
    x, y = np.zeros((4, 2)), np.array([0, 1, 0, 1])
    with pytest.raises(LinearProbeError, match="same D"):
        linear_probe(x, y, np.zeros((4, 3)), y)
    with pytest.raises(LinearProbeError, match="labels"):
        linear_probe(x, y[:3], x, y)
    with pytest.raises(LinearProbeError, match="fewer than 2 classes"):
        linear_probe(x, np.zeros(4, dtype=int), x, y)
    with pytest.raises(LinearProbeError, match="non-finite"):
        linear_probe(np.full((4, 2), np.nan), y, x, y)
    with pytest.raises(LinearProbeError, match="C must be"):
        linear_probe(x, y, x, y, C=0.0)
