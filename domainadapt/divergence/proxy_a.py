"""Proxy A-distance (Ben-David et al. 2007, "Analysis of representations for domain adaptation",
NIPS, §4; also Ganin et al. 2016, JMLR, §5.1.5): d_A = 2(1 − 2ε), ε the held-out error of a classifier
trained to tell the two domains apart.

Choices that public versions leave loose (seedless probes, last-epoch error, d_A < 0):
* the larger set is subsampled (seeded) to the size of the smaller, so chance error is exactly 0.5;
* a stratified, seeded train/held-out split;
* an L2 logistic regression on standardised features, C chosen by stratified k-fold cross-validation
  on the train part only, then refit on all of it; ε is its error on the held-out part;
* a Wilson score interval for ε (binomial over the held-out rows), mapped to d_A;
* ε is clipped to ≤ 0.5: a domain classifier worse than chance on balanced classes can flip its
  labels, and the A-distance is a supremum over a class closed under complement (linear classifiers),
  so ε > 0.5 is sampling noise of indistinguishable domains, and d_A < 0 has no meaning.
  The unclipped error is reported as ``raw_error``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from ._checks import as_feature_pair


@dataclass
class ProxyADistanceResult:
    """``distance`` = 2(1 − 2·``error``); ``interval`` on d_A from the Wilson interval ``error_interval``."""

    distance: float
    error: float
    raw_error: float
    interval: tuple[float, float]
    error_interval: tuple[float, float]
    C: float
    n_train: int
    n_test: int
    confidence: float


def wilson_interval(errors: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (Wilson 1927)."""
    from statistics import NormalDist

    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = errors / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def proxy_a_distance(
    x: Tensor,
    y: Tensor,
    seed: int = 0,
    *,
    test_fraction: float = 0.5,
    Cs: Sequence[float] = (1e-3, 1e-2, 1e-1, 1.0, 10.0),
    cv: int = 3,
    confidence: float = 0.95,
    max_iter: int = 2000,
) -> ProxyADistanceResult:
    """Proxy A-distance between feature sets x and y with a cross-validated linear domain classifier.

    See the module docstring for the protocol. Needs scikit-learn (imported here, not at import time).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1); got {test_fraction}")
    x, y = as_feature_pair(x, y, dtype=torch.float64)
    n = min(x.shape[0], y.shape[0])
    g = torch.Generator(device="cpu")
    g.manual_seed(int(seed))
    xs = x.cpu()[torch.randperm(x.shape[0], generator=g)[:n]]
    ys = y.cpu()[torch.randperm(y.shape[0], generator=g)[:n]]
    feats = torch.cat([xs, ys]).numpy()
    labels = torch.cat([torch.zeros(n), torch.ones(n)]).long().numpy()
    n_test = int(round(2 * n * test_fraction))
    if n_test < 2 or 2 * n - n_test < 2 * cv:
        raise ValueError(
            f"too few rows for a train/held-out split with {cv}-fold CV: {n} per domain after balancing"
        )
    f_tr, f_te, l_tr, l_te = train_test_split(
        feats, labels, test_size=n_test, stratify=labels, random_state=seed
    )
    search = GridSearchCV(
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter)),
        {"logisticregression__C": list(Cs)},
        cv=StratifiedKFold(n_splits=cv, shuffle=True, random_state=seed),
        scoring="accuracy",
    )
    search.fit(f_tr, l_tr)
    wrong = int((search.predict(f_te) != l_te).sum())
    raw = wrong / len(l_te)
    err = min(raw, 0.5)
    lo, hi = wilson_interval(wrong, len(l_te), confidence)
    lo, hi = min(lo, 0.5), min(hi, 0.5)
    return ProxyADistanceResult(
        distance=2.0 * (1.0 - 2.0 * err),
        error=err,
        raw_error=raw,
        interval=(2.0 * (1.0 - 2.0 * hi), 2.0 * (1.0 - 2.0 * lo)),
        error_interval=(lo, hi),
        C=float(search.best_params_["logisticregression__C"]),
        n_train=len(l_tr),
        n_test=len(l_te),
        confidence=confidence,
    )
