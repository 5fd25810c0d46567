"""Backbone + head. Methods read the features, so the classifier exposes both in one forward."""

from __future__ import annotations

from collections.abc import Sequence
from copy import deepcopy

import torch
from torch import nn


ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh,
                                            "leaky_relu": nn.LeakyReLU}  # by the names configs use


def mlp_layers(in_features: int, hidden: Sequence[int], dropout: float = 0.0,
               activation: str = "relu") -> tuple[list[nn.Module], int]:
    """[fc → activation (→ dropout)] per hidden width; returns the layers and the output width. The activation and
    dropout hold no parameters, so the Linear layers keep their indices for a given `dropout` whatever the
    activation (ReLU and dropout 0: the layout, and the state-dict keys, every earlier model had)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {list(ACTIVATIONS)}, got {activation!r}")
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h), ACTIVATIONS[activation]()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = h
    return layers, width


class MLPHead(nn.Module):
    """fc → activation (→ dropout) ... → classes; hidden=(100, 100) is Ganin et al.'s MNIST label head, hidden=()
    one linear layer, hidden=(256,) with dropout 0.4 the usual transfer-learning head (fc256 → ReLU → dropout →
    classes). Each Linear is its own block for the transfer strategies (`models.blocks`: head.net.0, head.net.3)."""

    def __init__(self, in_features: int, num_classes: int, hidden: Sequence[int] = (100, 100), dropout: float = 0.0,
                 activation: str = "relu"):
        super().__init__()
        layers, width = mlp_layers(in_features, hidden, dropout, activation)
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


def fresh_copy(module: nn.Module) -> nn.Module:
    """A copy of `module` (same architecture, on the same device) with every layer re-initialised by its own
    `reset_parameters` (draws from the global RNG, so a seeded run builds the same copy)."""
    copy = deepcopy(module)
    for layer in copy.modules():
        reset = getattr(layer, "reset_parameters", None)
        if callable(reset):
            reset()
    return copy
