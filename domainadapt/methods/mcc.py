"""MCC: minimum class confusion (Jin et al. 2020, ECCV, "Minimum Class Confusion for Versatile Domain
Adaptation", sec. 3, eqs. 1–7: temperature scaling, the entropy-based example weights, the weighted class
correlation, its row normalisation and the loss; check the numbering against the paper).

Target predictions Ŷ = softmax(logits_t / T) (T = 2.5); example weights W_ii = B · (1 + e^{−H(ŷ_i)}) /
Σ_j (1 + e^{−H(ŷ_j)}) (entropy of the temperature-scaled prediction, detached, as in the paper's and TLlib's
code; so the weights are the normalised 1 + e^{−H}, not a softmax of them); class correlation C = Ŷᵀ W Ŷ (K × K),
each row divided by its sum; loss = (Σ_jj' C_jj' − Σ_j C_jj) / K, the mean confusion between different classes.
Total: source cross-entropy + μ · loss, μ = 1 (the paper's UDA setting).
Anchor: REFERENCES.md, TLlib's table: MCC Office-31 89.6 (paper 89.4), Office-Home 72.4, ResNet-50.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Method, MethodContext, StepOutput
from .registry import register_method


def entropy(p: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Row-wise Shannon entropy (nats) of probability rows."""
    return -(p * (p + eps).log()).sum(1)


def mcc_loss(logits_t: torch.Tensor, temperature: float = 2.5) -> torch.Tensor:
    b, k = logits_t.shape
    p = (logits_t.float() / temperature).softmax(1)
    w = 1.0 + torch.exp(-entropy(p.detach()))
    w = b * w / w.sum()
    c = (p * w[:, None]).T @ p  # Ŷᵀ W Ŷ
    c = c / c.sum(1, keepdim=True)
    return (c.sum() - c.trace()) / k


@register_method
class MCC(Method):
    name = "mcc"

    def __init__(self, context: MethodContext, weight: float = 1.0, temperature: float = 2.5) -> None:
        super().__init__(context)
        if temperature <= 0:
            raise ValueError(f"mcc: temperature must be > 0, got {temperature}")
        self.weight, self.temperature = weight, temperature

    def losses(self, out: StepOutput, model: nn.Module) -> dict[str, torch.Tensor]:
        return {"cls": F.cross_entropy(out.logits_s, out.y_s),
                "mcc": self.weight * mcc_loss(out.logits_t, self.temperature)}
