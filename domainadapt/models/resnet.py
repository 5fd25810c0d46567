"""torchvision ResNets as feature extractors (the standard Office-31 backbone, e.g. ResNet-50 in CDAN/TLlib)."""

from __future__ import annotations

import torch
from torch import nn

from .registry import register_backbone

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class ResNetBackbone(nn.Module):
    """A torchvision ResNet without its classifier; inputs in [0, 1] are ImageNet-normalised inside.

    `weights=None` builds a random network (tests, training from scratch); `weights="DEFAULT"` (or any name
    torchvision accepts) loads pretrained weights, downloading them on first use.
    """

    def __init__(self, arch: str = "resnet18", weights: str | None = None) -> None:
        super().__init__()
        import torchvision  # 3 s of import (torch._dynamo via torchvision.ops): only when a ResNet is built

        builders = {n: getattr(torchvision.models, n) for n in ("resnet18", "resnet34", "resnet50", "resnet101")}
        if arch not in builders:
            raise ValueError(f"unknown ResNet '{arch}'; choose one of {sorted(builders)}")
        net = builders[arch](weights=weights)
        self.out_features = net.fc.in_features
        net.fc = nn.Identity()
        self.net = net
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


def _register(arch: str) -> None:
    def build(image_size: int, weights: str | None = None) -> ResNetBackbone:
        return ResNetBackbone(arch=arch, weights=weights)

    build.__doc__ = f"torchvision {arch} (ImageNet-normalised inside; weights=DEFAULT for pretrained), a linear head."
    register_backbone(arch)(build)


for _arch in ("resnet18", "resnet34", "resnet50", "resnet101"):
    _register(_arch)
