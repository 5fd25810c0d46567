"""The standard head of deep domain adaptation: a bottleneck (fc 256 → BatchNorm → ReLU) between backbone and
classifier, whose output is the feature the methods align.

Long et al. 2018 (NeurIPS, "Conditional Adversarial Domain Adaptation", CDAN) and TLlib's `ImageClassifier`
(`bottleneck_dim=256`: Linear → BatchNorm1d → ReLU, then a linear classifier; the domain discriminator and the
MMD terms read the bottleneck's output). Chosen per run with the backbone option `bottleneck=256` (0 or None:
off), for every image backbone, so no config field is needed. Initialisation: PyTorch's default, as in TLlib.
"""

from __future__ import annotations

from torch import Tensor, nn

_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def bottleneck_layers(in_features: int, width: int = 256) -> nn.Sequential:
    """fc `width` → BatchNorm1d → ReLU (TLlib `ImageClassifier.bottleneck`)."""
    return nn.Sequential(nn.Linear(in_features, width), nn.BatchNorm1d(width), nn.ReLU())


def _host_path(extractor: nn.Module) -> str:
    """Where the bottleneck layers are registered: the innermost module reached through lone wrappers (one
    parameterised child, no parameters of its own; the rule of `models.blocks`), stopping before a container,
    whose forward would run them."""
    path, module = "", extractor
    while not any(True for _ in module.parameters(recurse=False)):
        kids = [(n, c) for n, c in module.named_children() if any(True for _ in c.parameters())]
        if len(kids) != 1 or isinstance(kids[0][1], _CONTAINERS):
            break
        name, module = kids[0]
        path = f"{path}.{name}" if path else name
    return path


class Bottleneck(nn.Module):
    """`extractor` then the bottleneck layers; `out_features` is `width`.

    The layers are registered as `bottleneck` inside the extractor's innermost wrapped network (e.g. next to a
    ResNet's layer4), not beside the extractor: `models.blocks` then finds the network's stages and the
    bottleneck as its top block (beside it, the whole network would be one block for gradual unfreezing).
    The network's own forward never calls them; this module does."""

    def __init__(self, extractor: nn.Module, width: int = 256) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"bottleneck width must be a positive integer, got {width}")
        self.extractor = extractor
        host_path = _host_path(extractor)
        host = extractor.get_submodule(host_path)
        if hasattr(host, "bottleneck"):
            raise ValueError(f"backbone module {type(host).__name__} already has an attribute 'bottleneck'")
        host.add_module("bottleneck", bottleneck_layers(int(extractor.out_features), width))
        self.layers_path = f"{host_path}.bottleneck" if host_path else "bottleneck"
        self.out_features = width

    def forward(self, x: Tensor) -> Tensor:
        return self.extractor.get_submodule(self.layers_path)(self.extractor(x))
