"""Backbones by name: what each one is (image or text), how to build it, how wide its features are.

A new backbone is one file in `domainadapt/models/` (or a plug-in, see `domainadapt.plugins`):

    @register_backbone("tiny_cnn", modality="image")
    def tiny_cnn(image_size: int, channels: int = 8) -> nn.Module:   # keyword options = backbone_kwargs
        ...                                                           # a module with `out_features`

Image backbones take `image_size` and their options and return a feature extractor with `out_features`;
`build_model` puts a head on it. Text backbones name a Hugging Face model (`resolve()` gives its folder or hub
name); any name that is not registered is taken as a local folder or hub name of one, so a text task accepts
"minilm", "./my-bert" or "bert-base-uncased" alike.

Names not registered one by one are resolved on lookup by `register_backbone_resolver` functions: any torchvision
classification model by its plain name (`torchvision_any.py`), any timm model as `timm:NAME` (`timm_backbone.py`);
so importing the package imports neither. Every image backbone also takes the option `bottleneck=256`: the
standard UDA bottleneck (`bottleneck.py`; CDAN, Long et al. 2018; TLlib), whose output is the aligned feature.
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
from .bottleneck import Bottleneck
from .classifier import Classifier, MLPHead

MODALITIES = ("image", "text")
BOTTLENECK = "bottleneck"  # the option every image backbone takes (handled here, not by its builder)
_WEIGHT_OPTIONS = ("weights", "pretrained")  # never loaded for a feature width


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
    check: Callable[[dict[str, Any], int | None], None] | None = None  # image: check(options, image_size), no build

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
        if options.get(BOTTLENECK):
            return int(options[BOTTLENECK])
        with torch.device("meta"):
            kept = {k: v for k, v in options.items() if k not in _WEIGHT_OPTIONS and k != BOTTLENECK}
            return int(self.build(image_size, **kept).out_features)


_REGISTRY = Registry("backbone", __package__, frozenset({"registry", "classifier", "blocks"}), BackboneError)
_RESOLVERS: list[Callable[[str], BackboneSpec | None]] = []
_RESOLVED: dict[str, BackboneSpec] = {}


def register_backbone_resolver(resolve: Callable[[str], BackboneSpec | None]) -> Callable[[str], BackboneSpec | None]:
    """Decorator registering a function that names backbones not registered one by one (a family: every torchvision
    model, `timm:NAME`): `resolve(name)` returns the spec of a name it knows, else None; it is asked only about
    names the registry lacks, and should import its library only then."""
    if resolve not in _RESOLVERS:
        _RESOLVERS.append(resolve)
    return resolve


def find_backbone(name: str) -> BackboneSpec | None:
    """The spec of `name`: a registered backbone, else the first resolver's answer (cached), else None."""
    spec = _REGISTRY.find(name)
    if spec is not None or name in _RESOLVED:
        return spec if spec is not None else _RESOLVED[name]
    for resolve in _RESOLVERS:
        spec = resolve(name)
        if spec is not None:
            _RESOLVED[name] = spec
            return spec
    return None


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
    spec = find_backbone(name)
    return spec if spec is not None else _REGISTRY.lookup(name)


def backbone_modality(name: str) -> str:
    """'image' or 'text' for a registered or resolved backbone; 'text' for any other name (a Hugging Face folder or
    hub name)."""
    spec = find_backbone(name)
    return spec.modality if spec is not None else "text"


def resolve_text_backbone(name: str) -> str:
    """The folder or hub name a text backbone loads from: a registered name's `resolve()`, else the name itself."""
    spec = _REGISTRY.find(name)
    if spec is None:
        return name
    if spec.modality != "text":
        raise BackboneError(f"'{name}' is an {spec.modality} backbone, not a text model")
    return spec.resolve()


def check_image_backbone(name: str, options: dict[str, Any], image_size: int | None = None) -> BackboneSpec:
    """The spec of an image backbone, its options checked against the builder's signature and the spec's own
    check (a weights name, a timm name; with `image_size`, the size a ViT's weights need), without a build."""
    spec = find_backbone(name)
    if spec is not None and spec.modality != "image":
        raise BackboneError(f"backbone '{name}' is a {spec.modality} backbone, not an image one; "
                            f"image backbones: {available_backbones('image')}")
    if spec is None:
        raise BackboneError(f"unknown backbone '{name}': not a registered backbone {available_backbones('image')}, "
                            "not a torchvision model (see torchvision.models.list_models()), not timm:NAME")
    own = {k: v for k, v in options.items() if k != BOTTLENECK}
    accepted = spec.options()
    unknown = sorted(set(own) - accepted) if accepted is not None else []
    if unknown:
        raise BackboneError(f"backbone '{name}' does not take option(s) {unknown}; it takes "
                            f"{sorted(accepted | {BOTTLENECK})}")
    check_call_options(spec.build, own, where=f"backbone '{name}'", error=BackboneError, skip=("image_size",))
    width = options.get(BOTTLENECK)
    if width is not None and (isinstance(width, bool) or not isinstance(width, int) or width < 0):
        raise BackboneError(f"backbone '{name}': option 'bottleneck' must be a width (e.g. 256; 0 or null: off), "
                            f"got {width!r}")
    if spec.check is not None:
        spec.check(own, image_size)
    return spec


def build_model(backbone: str, num_classes: int, image_size: int, backbone_kwargs: dict[str, Any] | None = None,
                head_hidden: tuple[int, ...] | None = None) -> Classifier:
    """An image classifier: the named backbone (with option `bottleneck=W`: then fc W → BatchNorm → ReLU, whose
    output the methods align), then an MLP head (the backbone's default widths unless `head_hidden` is given; the
    digits CNN's is Ganin et al.'s fc100-fc100)."""
    options = dict(backbone_kwargs or {})
    spec = check_image_backbone(backbone, options, image_size)
    width = options.pop(BOTTLENECK, None)
    net = spec.build(image_size, **options)
    if width:
        net = Bottleneck(net, width)
    hidden = spec.head_hidden if head_hidden is None else head_hidden
    head = MLPHead(net.out_features, num_classes, hidden=hidden)
    return Classifier(net, head, feature_dim=net.out_features, num_classes=num_classes)
