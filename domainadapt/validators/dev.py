"""dev: deep embedded validation (You et al. 2019, ICML, "Towards Accurate Model Selection in Deep Unsupervised
Domain Adaptation", Algorithm 1 and sec. 4.2's control variate). A domain classifier on features gives each
held-out source row a density ratio w_i = p_T(x_i)/p_S(x_i) (importance.DensityRatioEstimator, logistic,
source = 1); with the weighted losses L_i = w_i · CE(z_i, y_i),

    η = −Cov(L, w) / Var(w),   R = mean(L) + η · mean(w) − η

is the control-variate estimate of the target risk (E[w] = 1 under the source), and the score is −R (higher is
better). The domain classifier is fitted on source TRAINING features when the run supplies them (so the rows it
weighs are not the rows it was fitted on, as in the paper) and on the validation features otherwise."""

from __future__ import annotations

import numpy as np
import torch.nn.functional as F

from ..importance import DensityRatioEstimator
from .base import ValidationInputs, Validator, as_float64
from .registry import register_validator


def dev_risk(weighted_losses: np.ndarray, weights: np.ndarray) -> float:
    """R = mean(L) + η·mean(w) − η with η = −Cov(L, w)/Var(w) (sample covariance and variance, ddof=1);
    η = 0 when the weights are constant (no variance to control)."""
    L, w = np.asarray(weighted_losses, dtype=np.float64), np.asarray(weights, dtype=np.float64)
    var = float(np.var(w, ddof=1)) if len(w) > 1 else 0.0
    eta = -float(np.cov(L, w, ddof=1)[0, 1]) / var if var > 0 else 0.0
    return float(L.mean() + eta * w.mean() - eta)


@register_validator
class DeepEmbeddedValidation(Validator):
    name = "dev"
    needs = frozenset({"source_features", "source_logits", "source_labels", "target_features"})

    def __init__(self, C: float = 1.0, seed: int = 0) -> None:
        self.C, self.seed = C, seed

    def score(self, inputs: ValidationInputs) -> float:
        fit_on = inputs.source_train_features if inputs.source_train_features is not None else inputs.source_features
        estimator = DensityRatioEstimator("logistic", C=self.C, seed=self.seed)
        estimator.fit(as_float64(fit_on).numpy(), as_float64(inputs.target_features).numpy())
        w = estimator.ratio(as_float64(inputs.source_features).numpy())
        loss = F.cross_entropy(as_float64(inputs.source_logits), inputs.source_labels.long().cpu(), reduction="none")
        return -dev_risk(w * loss.numpy(), w)
