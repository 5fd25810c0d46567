"""snd: soft neighbourhood density (Saito et al. 2021, ICCV, "Tune it the Right Way: Unsupervised Validation of
Domain Adaptation via Soft Neighborhood Density", sec. 3, eqs. 1–3). Each target prediction p_i is
L2-normalised (similarities of the classifier's softmax outputs, as pytorch-adapt's SNDValidator, layer
"preds", computes them; check against the paper), S_ij = ⟨p̂_i, p̂_j⟩ for j ≠ i, P_i = softmax_j(S_ij / τ) with τ = 0.05, and the score is the mean entropy
mean_i H(P_i). Higher is better: neighbourhoods that are dense (many close neighbours) rather than scattered.

The n×n similarity matrix is never held whole: rows are computed in blocks of `block` (memory O(block · n))."""

from __future__ import annotations

import torch

from .base import ValidationInputs, Validator, ValidatorError, as_float64
from .registry import register_validator


def soft_neighbourhood_density(p: torch.Tensor, temperature: float = 0.05, block: int = 1024) -> float:
    """Mean entropy of each row's softmax over its similarities to the other rows (scaled by 1/temperature)."""
    x = torch.nn.functional.normalize(p, dim=1)
    n, total = len(x), 0.0
    if n < 2:
        raise ValidatorError("validator 'snd' needs at least 2 target rows")
    for start in range(0, n, block):
        rows = torch.arange(start, min(start + block, n))
        s = x[rows] @ x.T / temperature
        s[torch.arange(len(rows)), rows] = float("-inf")  # j ≠ i
        logp = s.log_softmax(1)
        total += float(-(logp.exp() * logp.nan_to_num(neginf=0.0)).sum())
    return total / n


@register_validator
class SoftNeighbourhoodDensity(Validator):
    name = "snd"
    needs = frozenset({"target_logits"})

    def __init__(self, temperature: float = 0.05, block: int = 1024) -> None:
        if not temperature > 0 or block < 1:
            raise ValidatorError(f"validator 'snd': temperature must be > 0 and block >= 1, got {temperature}, {block}")
        self.temperature, self.block = temperature, block

    def score(self, inputs: ValidationInputs) -> float:
        p = as_float64(inputs.target_logits).softmax(1)
        return soft_neighbourhood_density(p, self.temperature, self.block)
