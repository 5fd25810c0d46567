"""BSP: batch spectral penalization (Chen et al. 2019, ICML, "Transferability vs. Discriminability: Batch
Spectral Penalization for Adversarial Domain Adaptation", sec. 4: L_bsp = Σ_{i≤k} σ²_{s,i} + σ²_{t,i}, eq. 6, and
the DANN+BSP objective, eq. 7; check the numbers).

`bsp` is `dann` (every DANN option, same defaults, the adversary warm start included) plus β · the sum of the k
largest squared singular values of the source and of the target feature batch (torch.linalg.svdvals), β = 1e-4,
k = 1 (the paper's values). Penalising the dominant directions keeps the adversarial alignment from making the
features depend on a few eigenvectors only (lost discriminability).
Anchor: REFERENCES.md, TLlib's table: BSP Office-31 87.8, Office-Home 67.6 (ResNet-50).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .base import MethodContext, StepOutput
from .dann import DANN
from .registry import register_method


def spectral_penalty(f_s: torch.Tensor, f_t: torch.Tensor, k: int = 1) -> torch.Tensor:
    """Σ of the k largest squared singular values of f_s plus those of f_t (float32 at least)."""
    total = f_s.new_zeros((), dtype=torch.promote_types(f_s.dtype, torch.float32))
    for f in (f_s, f_t):
        s = torch.linalg.svdvals(f.to(total.dtype))
        total = total + s[:k].pow(2).sum()
    return total


@register_method
class BSP(DANN):
    name = "bsp"
    revision = 0

    def __init__(self, context: MethodContext, hidden: Sequence[int] = (1024, 1024), gamma: float = 10.0,
                 max_coeff: float = 1.0, weight: float = 1.0, batch_norm: bool = False, dropout: float = 0.0,
                 lr_mult: float = 1.0, start_below: float = 0.5, beta: float = 1e-4, k: int = 1) -> None:
        super().__init__(context, hidden=hidden, gamma=gamma, max_coeff=max_coeff, weight=weight,
                         batch_norm=batch_norm, dropout=dropout, lr_mult=lr_mult, start_below=start_below)
        if k < 1:
            raise ValueError(f"bsp: k must be >= 1, got {k}")
        self.beta, self.k = beta, k

    def losses(self, out: StepOutput, model: nn.Module) -> dict[str, torch.Tensor]:
        losses = super().losses(out, model)
        losses["bsp"] = self.beta * spectral_penalty(out.f_s, out.f_t, self.k)
        return losses
