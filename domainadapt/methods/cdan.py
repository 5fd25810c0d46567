"""CDAN: conditional domain-adversarial network (Long et al. 2018, NeurIPS, "Conditional Adversarial Domain
Adaptation", sec. 3: the multilinear conditioning T⊗(h) = f ⊗ g (eq. 4), its randomized form T⊙(h) =
(R_f f) ⊙ (R_g g) / √d (eq. 5), the entropy-conditioned minimax objective CDAN+E (eq. 7); check the numbers).

A domain discriminator sees the multilinear map of the features f (d) and the predicted class probabilities
g = softmax(logits) (K): the flattened outer product (size d·K) when d·K ≤ `max_multilinear_dim` (4096, the paper's
switch), else the randomized map with `randomized_dim` (1024) and fixed Gaussian matrices R_f, R_g (buffers drawn
from `seed`, so they are checkpointed and identical in every process). g is detached inside the map (as TLlib:
the conditioning is not trained through the discriminator), the features reach it through the gradient reversal
layer with the DANN coefficient schedule; the schedule starts with `AdversaryWarmStart` and `start_below=0.5`,
the same default as `dann` (methods/dann.py explains why; start_below=1 is the paper's schedule).

Entropy conditioning (+E, `entropy=True`): example weights w = 1 + e^{−H(g)} (detached, as TLlib), normalised per
domain so each domain's weights sum to 1 and multiplied by the domain's batch size (so they average 1, as TLlib
scales them); the loss is the weighted mean of the per-example binary cross-entropies.
Discriminator: 1024 → 1024 → 1 with dropout 0.5, as the paper's code (`AdversarialNetwork`).
Anchor: REFERENCES.md: Office-31 ResNet-50 average, paper: CDAN 86.6, CDAN+E 87.7; TLlib's runs 87.7; TLlib digits
SVHN→MNIST 93.8, MNIST→USPS 96.0, USPS→MNIST 97.7.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .base import Method, MethodContext, StepOutput
from .discriminator import DomainDiscriminator, domain_labels
from .grl import AdversaryWarmStart, grad_reverse
from .mcc import entropy
from .registry import register_method


def entropy_weights(g_s: torch.Tensor, g_t: torch.Tensor) -> torch.Tensor:
    """1 + e^{−H(g)} per example, normalised so each domain's weights sum to its batch size (mean 1)."""
    parts = []
    for g in (g_s, g_t):
        w = 1.0 + torch.exp(-entropy(g.detach().float()))
        parts.append(w / w.sum() * len(g))
    return torch.cat(parts)


@register_method
class CDAN(Method):
    name = "cdan"

    def __init__(self, context: MethodContext, entropy: bool = True, randomized_dim: int = 1024,
                 max_multilinear_dim: int = 4096, hidden: Sequence[int] = (1024, 1024), dropout: float = 0.5,
                 batch_norm: bool = False, gamma: float = 10.0, max_coeff: float = 1.0, weight: float = 1.0,
                 lr_mult: float = 1.0, start_below: float = 0.5, seed: int = 0) -> None:
        super().__init__(context)
        d, k = context.feature_dim, context.num_classes
        self.randomized = d * k > max_multilinear_dim
        if self.randomized:
            if randomized_dim < 1:
                raise ValueError(f"cdan: randomized_dim must be >= 1, got {randomized_dim}")
            gen = torch.Generator().manual_seed(seed)
            self.register_buffer("r_f", torch.randn(d, randomized_dim, generator=gen))
            self.register_buffer("r_g", torch.randn(k, randomized_dim, generator=gen))
        self.map_dim = randomized_dim if self.randomized else d * k
        self.discriminator = DomainDiscriminator(self.map_dim, hidden, batch_norm=batch_norm, dropout=dropout)
        self.warm_start = AdversaryWarmStart(k, start_below, micro_steps=context.micro_steps)
        self.entropy = entropy
        self.gamma, self.max_coeff, self.weight, self.lr_mult = gamma, max_coeff, weight, lr_mult

    def multilinear_map(self, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """f (B×d), g (B×K) → B×(d·K) outer products, or B×randomized_dim randomized products."""
        g = g.detach().to(f.dtype)
        if self.randomized:
            return (f @ self.r_f.to(f.dtype)) * (g @ self.r_g.to(f.dtype)) / math.sqrt(self.map_dim)
        return (g.unsqueeze(2) * f.unsqueeze(1)).flatten(1)

    def losses(self, out: StepOutput, model: nn.Module) -> dict[str, torch.Tensor]:
        cls = F.cross_entropy(out.logits_s, out.y_s)
        coeff = self.warm_start(cls, out.progress, self.gamma, self.max_coeff)
        g_s, g_t = out.logits_s.float().softmax(1), out.logits_t.float().softmax(1)
        h = self.multilinear_map(torch.cat([out.f_s, out.f_t]), torch.cat([g_s, g_t]))
        logits = self.discriminator(grad_reverse(h, coeff)).float()
        labels = domain_labels(len(out.f_s), len(out.f_t), logits.device)
        if self.entropy:
            per_example = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
            domain = (entropy_weights(g_s, g_t) * per_example).mean()
        else:
            domain = F.binary_cross_entropy_with_logits(logits, labels)
        return {"cls": cls, "domain": self.weight * domain}
