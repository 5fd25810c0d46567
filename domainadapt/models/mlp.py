"""A fully connected backbone on flattened images: the network of the continual-learning benchmarks
(permuted MNIST: 2×1000 in van de Ven & Tolias; 2×400 for split MNIST; Kirkpatrick et al. 2017 use 2×400)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .classifier import ACTIVATIONS, mlp_layers
from .registry import BackboneError, register_backbone


class MLPBackbone(nn.Module):
    def __init__(self, in_features: int, hidden: Sequence[int] = (400, 400), dropout: float = 0.0,
                 activation: str = "relu") -> None:
        super().__init__()
        layers, width = mlp_layers(in_features, hidden, dropout, activation)
        self.net = nn.Sequential(nn.Flatten(), *layers)
        self.out_features = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@register_backbone("mlp")
def mlp(image_size: int, hidden: Sequence[int] = (400, 400), dropout: float = 0.0,
        activation: str = "relu") -> MLPBackbone:
    """Fully connected layers on the flattened 3×S×S image (permuted-MNIST's network), a linear head."""
    if activation not in ACTIVATIONS:
        raise BackboneError(f"backbone 'mlp': option 'activation' must be one of {list(ACTIVATIONS)}, "
                            f"got {activation!r}")
    return MLPBackbone(in_features=3 * image_size * image_size, hidden=hidden, dropout=dropout, activation=activation)
