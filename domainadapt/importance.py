"""Instance-based transfer: importance weights w(x) = p_T(x) / p_S(x) for source examples.

Under covariate shift (p_S(y|x) = p_T(y|x)), the target risk is the source risk reweighted by w(x)
(Shimodaira 2000). The density ratio is estimated with a probabilistic domain classifier trained to tell
source (label 1, `SOURCE`) from target (label 0) examples — the one convention of every domain classifier here,
the discriminators of DANN and of `methods.importance_weighted` included: by Bayes' rule

    w(x) = p_T(x) / p_S(x) = (n_S / n_T) · P(T | x) / P(S | x) = (n_S / n_T) · exp(−ℓ(x)),  ℓ = log P(S|x)/P(T|x)

(Bickel, Brückner & Scheffer 2007, "Discriminative learning for differing training and test distributions",
ICML, sec. 2; Sugiyama, Suzuki & Kanamori 2012, "Density Ratio Estimation in Machine Learning", ch. 4
"Probabilistic classification"). Logistic regression is exact when log w is linear in x (two Gaussians with
one shared covariance); a small MLP covers curved log-ratios.

Raw ratios have heavy tails: `clip` caps them and `normalize` rescales them to mean 1 over the source
(self-normalised importance weighting), and `effective_sample_size` says how many source examples the
weighted estimate is worth (Kish's n_eff = (Σw)² / Σw²).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

CLASSIFIERS = ("logistic", "mlp")
SOURCE, TARGET = 1, 0  # domain labels of every domain classifier in domainadapt


def ratio_from_source_logit(source_logit: torch.Tensor, prior_ratio: float) -> torch.Tensor:
    """p_T(x)/p_S(x) = (n_S/n_T) · exp(−ℓ(x)) from a domain classifier's logit ℓ = log P(S|x)/P(T|x)."""
    return prior_ratio * torch.exp(-source_logit)


def _as_2d(x: Any, what: str) -> np.ndarray:
    arr = x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{what} must be an n×d array of features, got shape {arr.shape}")
    if len(arr) == 0:
        raise ValueError(f"{what} is empty")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} holds NaN or infinite values")
    return arr


class DensityRatioEstimator:
    """Fit a domain classifier (source = 1) on (source, target) features; `ratio(x)` = (n_S/n_T)·P(T|x)/P(S|x).

    classifier: "logistic" (scikit-learn LogisticRegression on standardised features, strength `C`) or "mlp"
    (a one-hidden-layer torch MLP, full-batch Adam, seeded). `eps` bounds P(S|x) away from 0."""

    def __init__(self, classifier: str = "logistic", *, C: float = 1.0, hidden: int = 64, steps: int = 500,
                 lr: float = 0.01, weight_decay: float = 1e-4, seed: int = 0, eps: float = 1e-6) -> None:
        if classifier not in CLASSIFIERS:
            raise ValueError(f"unknown domain classifier '{classifier}'; choose one of {list(CLASSIFIERS)}")
        if not C > 0:
            raise ValueError(f"C must be > 0, got {C}")
        if not 0 < eps < 0.5:
            raise ValueError(f"eps must be in (0, 0.5), got {eps}")
        self.classifier, self.C, self.hidden, self.steps = classifier, C, hidden, steps
        self.lr, self.weight_decay, self.seed, self.eps = lr, weight_decay, seed, eps
        self.prior_ratio: float | None = None  # n_S / n_T
        self._predict: Any = None
        self._dim: int | None = None

    def fit(self, source: Any, target: Any) -> DensityRatioEstimator:
        xs, xt = _as_2d(source, "source features"), _as_2d(target, "target features")
        if xs.shape[1] != xt.shape[1]:
            raise ValueError(f"source features have {xs.shape[1]} dimensions, target features {xt.shape[1]}")
        x = np.concatenate([xs, xt])
        d = np.concatenate([np.full(len(xs), SOURCE), np.full(len(xt), TARGET)]).astype(np.float64)
        self.prior_ratio = len(xs) / len(xt)
        self._dim = xs.shape[1]
        self._predict = self._fit_logistic(x, d) if self.classifier == "logistic" else self._fit_mlp(x, d)
        return self

    def _fit_logistic(self, x: np.ndarray, d: np.ndarray) -> Any:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        model = make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=1000))
        model.fit(x, d)
        return lambda z: model.predict_proba(z)[:, 1]

    def _fit_mlp(self, x: np.ndarray, d: np.ndarray) -> Any:
        g = torch.Generator().manual_seed(self.seed)
        mean, std = x.mean(0), x.std(0) + 1e-12
        xt = torch.as_tensor((x - mean) / std, dtype=torch.float32)
        dt = torch.as_tensor(d, dtype=torch.float32)
        net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], self.hidden), torch.nn.ReLU(), torch.nn.Linear(self.hidden, 1))
        with torch.no_grad():
            for p in net.parameters():  # seeded init, independent of the global RNG
                p.copy_(torch.empty_like(p).uniform_(-1, 1, generator=g) / math.sqrt(p.shape[-1]))
        opt = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        for _ in range(self.steps):
            opt.zero_grad()
            torch.nn.functional.binary_cross_entropy_with_logits(net(xt).squeeze(1), dt).backward()
            opt.step()
        net.eval()

        def predict(z: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                logits = net(torch.as_tensor((z - mean) / std, dtype=torch.float32)).squeeze(1)
            return torch.sigmoid(logits.double()).numpy()

        return predict

    def source_probability(self, x: Any) -> np.ndarray:
        """P(S | x) of the fitted domain classifier."""
        if self._predict is None:
            raise RuntimeError("DensityRatioEstimator: call fit(source, target) first")
        z = _as_2d(x, "features")
        if z.shape[1] != self._dim:
            raise ValueError(f"features have {z.shape[1]} dimensions, the estimator was fitted on {self._dim}")
        return np.asarray(self._predict(z), dtype=np.float64)

    def target_probability(self, x: Any) -> np.ndarray:
        """P(T | x) = 1 − P(S | x)."""
        return 1.0 - self.source_probability(x)

    def ratio(self, x: Any) -> np.ndarray:
        """Estimated p_T(x) / p_S(x) = (n_S/n_T) · P(T|x) / P(S|x)."""
        q = np.clip(self.source_probability(x), self.eps, 1.0)
        return self.prior_ratio * (1.0 - q) / q


def finalize_weights(ratio: Any, *, clip: float | None = None, normalize: bool = True) -> np.ndarray:
    """Cap raw ratios at `clip` (variance control), then rescale to mean 1 if `normalize` (self-normalised)."""
    w = np.asarray(ratio, dtype=np.float64).copy()
    if w.ndim != 1 or len(w) == 0 or not np.isfinite(w).all() or (w < 0).any():
        raise ValueError("importance ratios must be a non-empty 1-D array of finite values >= 0")
    if clip is not None:
        if not clip > 0:
            raise ValueError(f"clip must be > 0 or None, got {clip}")
        w = np.minimum(w, clip)
    if normalize:
        total = w.sum()
        if total <= 0:
            raise ValueError("every importance weight is 0: source and target features do not overlap")
        w = w * (len(w) / total)
    return w


def importance_weights(
    source: Any,
    target: Any,
    *,
    classifier: str = "logistic",
    clip: float | None = None,
    normalize: bool = True,
    **estimator_kwargs: Any,
) -> np.ndarray:
    """Weights w(x_i) ≈ p_T(x_i)/p_S(x_i) for each source row, from a domain classifier fitted on both sets
    (see `DensityRatioEstimator`), clipped and self-normalised as asked. With normalize=False and clip=None the
    raw density-ratio estimates come back."""
    estimator = DensityRatioEstimator(classifier, **estimator_kwargs).fit(source, target)
    return finalize_weights(estimator.ratio(source), clip=clip, normalize=normalize)


def effective_sample_size(weights: Any) -> float:
    """Kish's effective sample size (Σw)² / Σw²: n for uniform weights, → 1 when one weight dominates."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or len(w) == 0 or (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
        raise ValueError("effective_sample_size needs a non-empty 1-D array of finite weights >= 0, not all 0")
    return float(w.sum() ** 2 / (w**2).sum())
