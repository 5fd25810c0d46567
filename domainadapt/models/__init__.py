"""Backbones and heads, chosen by name so configs and the CLI can name them (`registry`: one file per backbone)."""

from __future__ import annotations

from .classifier import Classifier, MLPHead
from .digits_cnn import DigitsCNN
from .registry import (
    BackboneError,
    BackboneSpec,
    available_backbones,
    backbone_modality,
    build_model,
    get_backbone,
    register_backbone,
    register_text_backbone,
    resolve_text_backbone,
)

__all__ = ["BackboneError", "BackboneSpec", "Classifier", "DigitsCNN", "MLPHead", "available_backbones",
           "backbone_modality", "build_model", "get_backbone", "register_backbone", "register_text_backbone",
           "resolve_text_backbone"]
