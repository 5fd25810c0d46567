"""torchvision ResNets as feature extractors (the standard Office-31 backbone, e.g. ResNet-50 in CDAN/TLlib).

`weights` is a torchvision weights name or a local file (a state dict or a checkpoint holding one, `weights.py`);
named weights that are neither cached nor downloadable fail in the check, before any data is read."""

from __future__ import annotations

import functools

import torch
from torch import nn

from .extractor import building_on_meta
from .registry import register_backbone
from .torchvision_any import check_torchvision_options, resolve_weights
from .weights import is_weights_path, load_weights_file, torchvision_download_failed

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class ResNetBackbone(nn.Module):
    """A torchvision ResNet without its classifier; inputs in [0, 1] are ImageNet-normalised inside.

    `weights=None` builds a random network (tests, training from scratch); `weights="DEFAULT"` (or any name
    torchvision accepts) loads pretrained weights, downloading them on first use; a file path loads that file
    (its `fc.*` dropped). On the meta device (counting blocks, feature widths) nothing is loaded.
    """

    def __init__(self, arch: str = "resnet18", weights: str | None = None) -> None:
        super().__init__()
        import torchvision  # 3 s of import (torch._dynamo via torchvision.ops): only when a ResNet is built

        builders = {n: getattr(torchvision.models, n) for n in ("resnet18", "resnet34", "resnet50", "resnet101")}
        if arch not in builders:
            raise ValueError(f"unknown ResNet '{arch}'; choose one of {sorted(builders)}")
        where = f"backbone '{arch}'"
        member = resolve_weights(arch, weights)
        try:
            net = builders[arch](weights=None if building_on_meta() else member)
        except OSError as err:  # a download that fails after the check passed (URLError is an OSError)
            raise torchvision_download_failed(where, member, err) from None
        self.out_features = net.fc.in_features
        net.fc = nn.Identity()
        if is_weights_path(weights) and not building_on_meta():
            load_weights_file(net, weights, where=where, option="weights", classifier=("fc",))
        self.net = net
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


def _register(arch: str) -> None:
    def build(image_size: int, weights: str | None = None) -> ResNetBackbone:
        return ResNetBackbone(arch=arch, weights=weights)

    build.__doc__ = (f"torchvision {arch} (ImageNet-normalised inside; weights=DEFAULT or a .pth file for "
                     "pretrained), a linear head.")
    register_backbone(arch, check=functools.partial(check_torchvision_options, arch))(build)


for _arch in ("resnet18", "resnet34", "resnet50", "resnet101"):
    _register(_arch)
