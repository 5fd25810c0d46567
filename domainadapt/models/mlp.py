"""A fully connected backbone on flattened images: the network of the continual-learning benchmarks
(permuted MNIST: 2×1000 in van de Ven & Tolias; 2×400 for split MNIST; Kirkpatrick et al. 2017 use 2×400)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class MLPBackbone(nn.Module):
    def __init__(self, in_features: int, hidden: Sequence[int] = (400, 400), dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        self.net = nn.Sequential(*layers)
        self.out_features = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
