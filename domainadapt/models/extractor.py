"""What turns a third-party classification network (torchvision, timm) into a feature extractor.

The network keeps its own module names (so its weights keep their keys); around it, `ImageFeatureExtractor`
normalises inputs in [0, 1] with the mean/std its weights were trained with and exposes `out_features`.
`stack_trunk` lets `models.blocks` see the stages of a network whose stages sit in one `nn.Sequential`
(MobileNet/EfficientNet `features`, timm ViT `blocks`, timm ConvNeXt `stages`): blocks splits a ModuleList
stack per layer, a Sequential not (it would also split a ResNet's `layer1` into its residual blocks).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def building_on_meta() -> bool:
    """True inside `with torch.device("meta")` (counting blocks or feature widths): never load weights there."""
    return torch.empty(()).device.type == "meta"


class ImageFeatureExtractor(nn.Module):
    """`net` (its classifier removed) on inputs normalised inside: inputs arrive in [0, 1], as for every backbone
    of this package; `mean`/`std` are the ones of the weights (ImageNet's, or timm's pretrained config)."""

    def __init__(self, net: nn.Module, out_features: int, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD) -> None:
        super().__init__()
        self.net = net
        self.out_features = int(out_features)
        self.register_buffer("mean", torch.tensor(tuple(mean), dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(tuple(std), dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


class LayerStack(nn.ModuleList):
    """Layers run in order, exactly as the `nn.Sequential` it replaces (same child names, so the same weight keys);
    a ModuleList, so `models.blocks` gives each layer its own block."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = layer(x)
        return x


def _param_children(module: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, c) for n, c in module.named_children() if any(True for _ in c.parameters())]


def stack_trunk(net: nn.Module, min_layers: int = 3) -> str | None:
    """Turn the network's trunk into a `LayerStack` in place; returns its name (None: left as it is).

    The trunk is the one top-level `nn.Sequential` with at least `min_layers` parameterised children, its children
    named 0..n-1. A network with several (a ResNet's layer1..4 with 3+ residual blocks each) or none is left as
    it is: its stages already are top-level children."""
    stacks = [(n, c) for n, c in net.named_children()
              if type(c) is nn.Sequential and len(_param_children(c)) >= min_layers]
    if len(stacks) != 1:
        return None
    name, seq = stacks[0]
    if [k for k, _ in seq.named_children()] != [str(i) for i in range(len(seq))]:
        return None  # named layers (DenseNet's features): a ModuleList would rename them
    setattr(net, name, LayerStack(list(seq)))
    return name


def replace_module(net: nn.Module, path: str, new: nn.Module) -> nn.Module:
    """Put `new` at dotted `path` inside `net` (e.g. "classifier.3"), keeping its place; returns the old module."""
    parent_path, _, attr = path.rpartition(".")
    parent = net.get_submodule(parent_path) if parent_path else net
    old = getattr(parent, attr)
    setattr(parent, attr, new)
    return old
