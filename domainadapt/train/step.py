"""One training step's module: model + method (+ penalties) as ONE nn.Module, and the trainer's train mode."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..methods.base import Method


class StepModule(nn.Module):
    """Model + method in one module, so DDP wraps (and synchronises) both and one forward yields the losses."""

    def __init__(self, model: nn.Module, method: Method, regularizers: nn.ModuleDict | None = None) -> None:
        super().__init__()
        self.model = model
        self.method = method
        self.regularizers = regularizers if regularizers is not None else nn.ModuleDict()

    def forward(
        self,
        x_s: Any,
        y_s: torch.Tensor | None,
        x_t: Any,
        y_t: torch.Tensor | None,
        progress: float,
        step: int,
        phase: str | None = None,
        index_t: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        self.method.take_reports()  # reports of forwards outside training (none usually) are not this step's
        extra: dict[str, Any] = {}  # passed only when used, so an older compute_losses override keeps working
        if phase is not None:
            extra["phase"] = phase
        if index_t is not None:
            extra["index_t"] = index_t
        losses = self.method.compute_losses(self.model, x_s, y_s, x_t, y_t, progress, step, **extra)
        if not losses:
            raise RuntimeError(f"method '{self.method.name}' returned no losses")
        for name, regularizer in self.regularizers.items():  # penalties that compose with any method (EWC, L2-SP)
            losses[name] = regularizer(self.model)
        total = torch.stack([v.float() for v in losses.values()]).sum()
        return total, losses


def set_train_mode(module: nn.Module) -> None:
    """train(), except BatchNorm layers whose parameters are all frozen: they keep their running statistics
    (a frozen feature extractor must not drift through its normalisation)."""
    module.train()
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            params = list(m.parameters())
            if params and not any(p.requires_grad for p in params):
                m.eval()
