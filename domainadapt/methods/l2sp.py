"""L2-SP (Li et al. 2018, ICML, "Explicit Inductive Bias for Transfer Learning with CNNs", eq. 3):
(α/2)‖θ_shared − θ⁰‖² + (β/2)‖θ_new‖², θ⁰ the starting (pretrained) weights, θ_new the layers it lacks."""

from __future__ import annotations

import torch
from torch import nn


class L2SPPenalty(nn.Module):
    def __init__(self, alpha: float, beta: float = 0.0, *, reference: dict[str, torch.Tensor],
                 new_params: list[str] | tuple[str, ...] = ()) -> None:
        super().__init__()
        if alpha < 0 or beta < 0:
            raise ValueError(f"L2-SP α and β must be >= 0, got α={alpha}, β={beta}")
        overlap = sorted(set(reference) & set(new_params))
        if overlap:
            raise ValueError(f"L2-SP: parameters {overlap} are both shared (in the reference) and new")
        self.alpha, self.beta = float(alpha), float(beta)
        self.shared = sorted(reference)
        self.new_params = sorted(new_params)
        for name in self.shared:
            self.register_buffer("ref__" + name.replace(".", "__"), reference[name].detach().clone().float())

    def forward(self, model: nn.Module) -> torch.Tensor:
        params = dict(model.named_parameters())
        missing = [n for n in self.shared + self.new_params if n not in params]
        if missing:
            raise ValueError(f"L2-SP: the model has no parameter(s) {missing[:3]}")
        shared = sum(((params[n].float() - getattr(self, "ref__" + n.replace(".", "__"))) ** 2).sum()
                     for n in self.shared)
        new = sum((params[n].float() ** 2).sum() for n in self.new_params) if self.new_params else 0.0
        return 0.5 * self.alpha * shared + 0.5 * self.beta * new
