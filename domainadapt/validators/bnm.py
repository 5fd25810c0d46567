"""bnm: ‖P‖_* / n, the nuclear norm of the n×K matrix of target softmax predictions over its row count (Cui et al.
2020, CVPR, "Towards Discriminability and Diversity: Batch Nuclear-norm Maximization under Label Insufficient
Situations", sec. 3.3, eq. 8; the loss of methods/bnm.py, with the sign turned). Higher is better: it bounds
both the confidence (Frobenius norm) and the diversity (rank) of the predictions."""

from __future__ import annotations

import torch

from .base import ValidationInputs, Validator, as_float64
from .registry import register_validator


@register_validator
class BatchNuclearNorm(Validator):
    name = "bnm"
    needs = frozenset({"target_logits"})

    def score(self, inputs: ValidationInputs) -> float:
        p = as_float64(inputs.target_logits).softmax(1)
        return float(torch.linalg.svdvals(p).sum() / len(p))
