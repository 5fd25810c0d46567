"""Backbones by name: what each one is (image or text), how to build it, how wide its features are.

A new backbone is one file in `domainadapt/models/` (or a plug-in, see `domainadapt.plugins`):

    @register_backbone("tiny_cnn", modality="image")
    def tiny_cnn(image_size: int, channels: int = 8) -> nn.Module:   # keyword options = backbone_kwargs
        ...                                                           # a module with `out_features`

Image backbones take `image_size` and their options and return a feature extractor with `out_features`;
`build_model` puts a head on it. Text backbones name a Hugging Face model (`resolve()` gives its folder or hub
name); any name that is not registered is taken as a local folder or hub name of one, so a text task accepts
"minilm", "./my-bert" or "bert-base-uncased" alike.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..options import check_call_options
from ..plugins import Registry
from .classifier import Classifier, MLPHead

MODALITIES = ("image", "text")


class BackboneError(ValueError):
    """An unknown backbone, a backbone of the wrong modality, or options it does not take."""


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    modality: str
    build: Callable[..., nn.Module] | None = None  # image: build(image_size, **options) -> module with out_features
    head_hidden: tuple[int, ...] = ()  # hidden widths of the default classifier head
    resolve: Callable[[], str] | None = None  # text: the folder or hub name to load
    doc: str = ""

    def options(self) -> set[str] | None:
        """Option names the builder takes (None: any)."""
        if self.build is None:
            return set()
        params = inspect.signature(self.build).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return None
        return {n for n in list(params)[1:]}

    def feature_dim(self, image_size: int, **options: Any) -> int:
        """Width of the features, from a build on the meta device (no weights allocated, nothing downloaded)."""
        with torch.device("meta"):
            return int(self.build(image_size, **{k: v for k, v in options.items() if k != "weights"}).out_features)


_REGISTRY = Registry("backbone", __package__, frozenset({"registry", "classifier", "blocks"}), BackboneError)


def register_backbone(name: str, *, modality: str = "image", head_hidden: tuple[int, ...] = (),
                      resolve: Callable[[], str] | None = None) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering an image backbone builder (text: `register_text_backbone`)."""
    if modality not in MODALITIES:
        raise BackboneError(f"backbone '{name}': modality must be one of {list(MODALITIES)}, got '{modality}'")

    def wrap(build: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        doc = (inspect.getdoc(build) or "").splitlines()
        _REGISTRY.add(name, BackboneSpec(name, modality, build, tuple(head_hidden), resolve, doc[0] if doc else ""))
        return build

    return wrap


def register_text_backbone(name: str, resolve: Callable[[], str], doc: str = "") -> None:
    """A named Hugging Face model: `resolve()` returns its folder or hub name (and fails clearly when absent)."""
    _REGISTRY.add(name, BackboneSpec(name, "text", resolve=resolve, doc=doc))


def available_backbones(modality: str | None = None) -> list[str]:
    return [n for n in _REGISTRY.names() if modality is None or _REGISTRY[n].modality == modality]


def get_backbone(name: str) -> BackboneSpec:
    return _REGISTRY.lookup(name)


def backbone_modality(name: str) -> str:
    """'image' or 'text' for a registered backbone; 'text' for any other name (a Hugging Face folder or hub name)."""
    spec = _REGISTRY.find(name)
    return spec.modality if spec is not None else "text"


def resolve_text_backbone(name: str) -> str:
    """The folder or hub name a text backbone loads from: a registered name's `resolve()`, else the name itself."""
    spec = _REGISTRY.find(name)
    if spec is None:
        return name
    if spec.modality != "text":
        raise BackboneError(f"'{name}' is an {spec.modality} backbone, not a text model")
    return spec.resolve()


def check_image_backbone(name: str, options: dict[str, Any]) -> BackboneSpec:
    """The spec of an image backbone, its options checked against the builder's signature (no build)."""
    spec = _REGISTRY.find(name)
    if spec is None or spec.modality != "image":
        raise BackboneError(f"unknown backbone '{name}'; choose one of {available_backbones('image')}")
    accepted = spec.options()
    unknown = sorted(set(options) - accepted) if accepted is not None else []
    if unknown:
        raise BackboneError(f"backbone '{name}' does not take option(s) {unknown}; it takes {sorted(accepted) or 'none'}")
    check_call_options(spec.build, options, where=f"backbone '{name}'", error=BackboneError, skip=("image_size",))
    return spec


def build_model(backbone: str, num_classes: int, image_size: int, backbone_kwargs: dict[str, Any] | None = None,
                head_hidden: tuple[int, ...] | None = None) -> Classifier:
    """An image classifier: the named backbone, then an MLP head (the backbone's default widths unless
    `head_hidden` is given; the digits CNN's is Ganin et al.'s fc100-fc100)."""
    spec = check_image_backbone(backbone, dict(backbone_kwargs or {}))
    net = spec.build(image_size, **dict(backbone_kwargs or {}))
    hidden = spec.head_hidden if head_hidden is None else head_hidden
    head = MLPHead(net.out_features, num_classes, hidden=hidden)
    return Classifier(net, head, feature_dim=net.out_features, num_classes=num_classes)
