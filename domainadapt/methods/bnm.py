"""BNM: batch nuclear-norm maximization (Cui et al. 2020, CVPR, "Towards Discriminability and Diversity: Batch
Nuclear-norm Maximization under Label Insufficient Situations", sec. 3.3, the BNM loss L_bnm = −‖A‖_* / B
(eq. 9 in the arXiv version; check the number against the CVPR version).

Losses: source cross-entropy + λ · (−‖A‖_* / B), A = softmax(target logits) (B × K). The nuclear norm (sum of
singular values) is large when the batch's predictions are both confident (discriminability, via the Frobenius
norm it bounds) and spread over many classes (diversity, via the rank). λ = 1 as in the paper's UDA runs.
Anchor: REFERENCES.md has no BNM accuracy; the paper's Office-31 ResNet-50 table (Table 2, check) is the number to
aim at.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Method, MethodContext, StepOutput
from .registry import register_method


def bnm_loss(logits_t: torch.Tensor) -> torch.Tensor:
    """−‖softmax(logits_t)‖_* / B (computed in float32 at least: SVD has no half kernels)."""
    p = logits_t.float().softmax(1)
    return -torch.linalg.svdvals(p).sum() / p.shape[0]


@register_method
class BNM(Method):
    name = "bnm"

    def __init__(self, context: MethodContext, weight: float = 1.0) -> None:
        super().__init__(context)
        self.weight = weight

    def losses(self, out: StepOutput, model: nn.Module) -> dict[str, torch.Tensor]:
        return {"cls": F.cross_entropy(out.logits_s, out.y_s), "bnm": self.weight * bnm_loss(out.logits_t)}
