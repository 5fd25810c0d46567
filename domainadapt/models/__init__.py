"""Backbones and heads, chosen by name so configs and the CLI can name them."""

from __future__ import annotations

from typing import Any

from .classifier import Classifier, MLPHead
from .digits_cnn import DigitsCNN

BACKBONES = ("digits_cnn", "mlp", "resnet18", "resnet34", "resnet50", "resnet101")


def build_model(
    backbone: str,
    num_classes: int,
    image_size: int,
    backbone_kwargs: dict[str, Any] | None = None,
    head_hidden: tuple[int, ...] | None = None,
) -> Classifier:
    """Build a classifier. Digits CNN → Ganin et al.'s fc100-fc100 head; ResNets → a linear head."""
    kwargs = dict(backbone_kwargs or {})
    if backbone == "digits_cnn":
        net = DigitsCNN(image_size=image_size, **kwargs)
        hidden = (100, 100) if head_hidden is None else head_hidden
    elif backbone == "mlp":
        from .mlp import MLPBackbone

        net = MLPBackbone(in_features=3 * image_size * image_size, **kwargs)
        hidden = () if head_hidden is None else head_hidden
    elif backbone.startswith("resnet") and backbone in BACKBONES:
        from .resnet import ResNetBackbone

        net = ResNetBackbone(arch=backbone, **kwargs)
        hidden = () if head_hidden is None else head_hidden
    else:
        raise ValueError(f"unknown backbone '{backbone}'; choose one of {list(BACKBONES)}")
    head = MLPHead(net.out_features, num_classes, hidden=hidden)
    return Classifier(net, head, feature_dim=net.out_features, num_classes=num_classes)


__all__ = ["BACKBONES", "Classifier", "DigitsCNN", "MLPHead", "build_model"]
