"""The linear probe: equal to scikit-learn's pipeline, right on separable and chance on shuffled data, named errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.preprocessing import StandardScaler

from domainadapt.evaluation import LinearProbeError, linear_probe, paired_bootstrap_difference


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
    assert out.acc == 1.0 and out.macro_f1 == 1.0 and np.array_equal(out.predictions, yte)

    xtr, ytr = _blobs(10, sep=1.0, seed=2)
    xte, yte = _blobs(30, sep=1.0, seed=2)
    xte = xte + np.random.default_rng(3).normal(size=xte.shape)
    scaler = StandardScaler().fit(xtr)
    pred = LogisticRegression(C=0.5, max_iter=5000).fit(scaler.transform(xtr), ytr).predict(scaler.transform(xte))
    out = linear_probe(xtr, ytr, xte, yte, C=0.5)
    assert out.acc == pytest.approx((pred == yte).mean()) and np.array_equal(out.predictions, pred)
    assert out.macro_f1 == pytest.approx(f1_score(yte, pred, average="macro"))
    assert 0.34 < out.acc < 1.0  # overlapping blobs: better than chance, not perfect


def test_probe_is_at_chance_when_labels_carry_no_signal():
    g = np.random.default_rng(0)
    accs = [linear_probe(g.normal(size=(60, 8)), g.integers(0, 3, 60), g.normal(size=(600, 8)), g.integers(0, 3, 600)).acc
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


def test_paired_bootstrap_difference_brackets_the_difference_and_shrinks_with_n():
    from domainadapt.evaluation import ProbeResult
    from domainadapt.evaluation.linear_probe import macro_f1

    g = np.random.default_rng(0)

    def pair(n):
        y = g.integers(0, 4, n)
        good = np.where(g.random(n) < 0.8, y, g.integers(0, 4, n))  # ~85% right
        bad = np.where(g.random(n) < 0.6, y, g.integers(0, 4, n))  # ~70% right
        res = [ProbeResult(float((p == y).mean()), macro_f1(y, p), p, y) for p in (good, bad)]
        return res, paired_bootstrap_difference(*res, n_boot=500)

    (a, b), (d, lo, hi) = pair(400)
    assert d == pytest.approx(a.macro_f1 - b.macro_f1) and lo < d < hi and lo > 0  # a real 15-point gap: excludes 0
    _, (_, lo_big, hi_big) = pair(4000)
    assert hi_big - lo_big < 0.5 * (hi - lo)  # 10× the entries: the interval about √10 narrower
    same = paired_bootstrap_difference(a, a, n_boot=50)
    assert same == (0.0, 0.0, 0.0)  # identical predictions: no difference in any resample
    other = ProbeResult(a.acc, a.macro_f1, a.predictions, (a.labels + 1) % 4)
    with pytest.raises(LinearProbeError, match="different test labels"):
        paired_bootstrap_difference(a, other)
    with pytest.raises(LinearProbeError, match="n_boot"):
        paired_bootstrap_difference(a, b, level=1.5)
