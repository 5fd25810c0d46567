"""Backbone + head. Methods read the features, so the classifier exposes both in one forward."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def mlp_layers(in_features: int, hidden: Sequence[int], dropout: float = 0.0) -> tuple[list[nn.Module], int]:
    """[fc → ReLU (→ dropout)] per hidden width; returns the layers and the output width."""
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = h
    return layers, width


class MLPHead(nn.Module):
    """fc → ReLU (→ dropout) ... → classes; hidden=(100, 100) is Ganin et al.'s MNIST label head."""

    def __init__(self, in_features: int, num_classes: int, hidden: Sequence[int] = (100, 100), dropout: float = 0.0):
        super().__init__()
        layers, width = mlp_layers(in_features, hidden, dropout)
        self.net = nn.Sequential(*layers, nn.Linear(width, num_classes))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.net(f)


class Classifier(nn.Module):
    def __init__(self, backbone: nn.Module, head: nn.Module, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.feature_dim = feature_dim
        self.num_classes = num_classes

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.backbone(x)
        return f, self.head(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))
