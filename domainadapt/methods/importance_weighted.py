"""Importance-weighted source training: cross-entropy of each source example weighted by w(x) = p_T(x)/p_S(x)
(covariate-shift correction, Shimodaira 2000; weights from a domain classifier as in Bickel et al. 2007, ICML,
sec. 2; `domainadapt.importance` holds the estimator, the domain-label convention and the ratio formula).

How the weights reach the loss: the method owns a domain classifier (logistic regression by default, an MLP
with `hidden`) and trains it on the fly on the step's DETACHED features, f_s (label 1 = source, as in the
other discriminators) against f_t, with its own loss term "domain". Its logit ℓ(x) = log P(S|x)/P(T|x) gives
each source example w = (n_s/n_t)·exp(−ℓ(x)), detached, clipped at `clip` and self-normalised to mean 1 over
the batch. The batch is all a step sees (a StepOutput carries no example indices, so precomputed weights could
not be looked up), the classifier tracks the features as they change during training, and because the weights
are detached and the classifier sees detached features, the backbone can neither game the weights nor be
pushed by the domain loss. For the first `warmup` fraction of training the weights are 1 (the classifier is
still guessing); the classifier trains from step 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..importance import ratio_from_source_logit
from .base import Method, MethodContext, StepOutput
from .discriminator import DomainDiscriminator, domain_labels
from .registry import MethodError, register_method


@register_method
class ImportanceWeighted(Method):
    name = "importance_weighted"

    def __init__(self, context: MethodContext, hidden: Sequence[int] = (), clip: float | None = 10.0,
                 warmup: float = 0.1, lr_mult: float = 1.0, domain_weight: float = 1.0) -> None:
        super().__init__(context)
        if clip is not None and not clip > 0:
            raise MethodError(f"importance_weighted: clip must be > 0 or None, got {clip}")
        if not 0.0 <= warmup < 1.0:
            raise MethodError(f"importance_weighted: warmup is a fraction of training in [0, 1), got {warmup}")
        if not domain_weight > 0:
            raise MethodError(f"importance_weighted: domain_weight must be > 0, got {domain_weight}")
        self.discriminator = DomainDiscriminator(context.feature_dim, tuple(hidden))
        self.clip, self.warmup, self.lr_mult, self.domain_weight = clip, warmup, lr_mult, domain_weight
        self.last_weights: torch.Tensor | None = None  # the latest batch's weights (inspection only)

    def source_weights(self, f_s: torch.Tensor, n_target: int) -> torch.Tensor:
        """Clipped, self-normalised (mean 1) importance weights of source features, no gradient."""
        with torch.no_grad():
            logit = self.discriminator(f_s.detach()).float()  # log P(S|x)/P(T|x)
            w = ratio_from_source_logit(logit, len(f_s) / n_target)
            if self.clip is not None:
                w = w.clamp(max=self.clip)
            return w * (len(w) / w.sum().clamp_min(1e-12))

    def losses(self, out: StepOutput, model: nn.Module) -> dict[str, torch.Tensor]:
        f_s, f_t = out.f_s.detach(), out.f_t.detach()
        logits = self.discriminator(torch.cat([f_s, f_t])).float()
        domain = F.binary_cross_entropy_with_logits(logits, domain_labels(len(f_s), len(f_t), logits.device))
        if out.progress < self.warmup:
            w = torch.ones(len(f_s), device=f_s.device)
        else:
            w = self.source_weights(f_s, len(f_t))
        self.last_weights = w
        ce = F.cross_entropy(out.logits_s.float(), out.y_s, reduction="none")
        return {"cls": (w * ce).mean(), "domain": self.domain_weight * domain}
