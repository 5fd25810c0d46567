"""Backbones and heads, chosen by name so configs and the CLI can name them (`registry`: one file per backbone;
any torchvision model by name and `timm:NAME` resolved on lookup; `bottleneck`: the UDA bottleneck option)."""

from __future__ import annotations

from .bottleneck import Bottleneck
from .classifier import Classifier, MLPHead
from .digits_cnn import DigitsCNN
from .registry import (
    BackboneError,
    BackboneSpec,
    available_backbones,
    backbone_modality,
    build_model,
    find_backbone,
    get_backbone,
    register_backbone,
    register_backbone_resolver,
    register_text_backbone,
    resolve_text_backbone,
)

__all__ = ["BackboneError", "BackboneSpec", "Bottleneck", "Classifier", "DigitsCNN", "MLPHead", "available_backbones",
           "backbone_modality", "build_model", "find_backbone", "get_backbone", "register_backbone",
           "register_backbone_resolver", "register_text_backbone", "resolve_text_backbone"]
