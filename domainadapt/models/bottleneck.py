"""The standard head of deep domain adaptation: a bottleneck (fc 256 → BatchNorm → ReLU) between backbone and
classifier, whose output is the feature the methods align.

Long et al. 2018 (NeurIPS, "Conditional Adversarial Domain Adaptation", CDAN) and TLlib's `ImageClassifier`
(`bottleneck_dim=256`: Linear → BatchNorm1d → ReLU, then a linear classifier; the domain discriminator and the
MMD terms read the bottleneck's output). Chosen per run with the backbone option `bottleneck=256` (0 or None:
off), for every image backbone, so no config field is needed. Initialisation: PyTorch's default, as in TLlib.
"""

from __future__ import annotations

from torch import Tensor, nn

from .blocks import Blocks, blocks_of


def bottleneck_layers(in_features: int, width: int = 256) -> nn.Sequential:
    """fc `width` → BatchNorm1d → ReLU (TLlib `ImageClassifier.bottleneck`)."""
    return nn.Sequential(nn.Linear(in_features, width), nn.BatchNorm1d(width), nn.ReLU())


class Bottleneck(nn.Module):
    """`extractor` then the `bottleneck` layers; `out_features` is `width`.

    For transfer strategies (gradual unfreezing, discriminative learning rates) its blocks are the extractor's
    own blocks, then the bottleneck as the top one (`transfer_blocks`); by the generic rules of `models.blocks`
    the whole extractor would be a single block beside it."""

    def __init__(self, extractor: nn.Module, width: int = 256) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"bottleneck width must be a positive integer, got {width}")
        self.extractor = extractor
        self.bottleneck = bottleneck_layers(int(extractor.out_features), width)
        self.out_features = width

    def transfer_blocks(self) -> Blocks:
        return [*blocks_of(self.extractor, "extractor"), ("bottleneck", ["bottleneck"])]

    def forward(self, x: Tensor) -> Tensor:
        return self.bottleneck(self.extractor(x))
