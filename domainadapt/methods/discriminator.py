"""A domain discriminator: an MLP from features to one logit (source = 1, target = 0)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class DomainDiscriminator(nn.Module):
    """feature_dim → hidden… → 1. Ganin et al. 2016 use fc100 → 1 for MNIST and 1024 → 1024 → 1 for the
    larger digit pairs; public reimplementations (TLlib) use 1024 → 1024 with BatchNorm for every pair."""

    def __init__(self, feature_dim: int, hidden: Sequence[int] = (1024, 1024), batch_norm: bool = False,
                 dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = feature_dim
        for h in hidden:
            layers.append(nn.Linear(width, h))
            if batch_norm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.net(f).squeeze(1)


def domain_labels(n_source: int, n_target: int, device: torch.device) -> torch.Tensor:
    return torch.cat([torch.ones(n_source, device=device), torch.zeros(n_target, device=device)])
