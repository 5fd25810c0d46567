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
The classifier head is configured the same way, for every image backbone, so a head is data in a config rather
than code: `head_hidden=[256]` (hidden widths; [] is one linear layer; absent: the backbone's default, linear for
all but the digits CNN), `head_activation=relu|gelu|tanh|leaky_relu`, `head_dropout=0.4` (after each hidden
activation): the fine-tuning head Linear(2048, 256) → ReLU → Dropout(0.4) → Linear(256, k) of a ResNet-50 is
`{"head_hidden": [256], "head_dropout": 0.4}`. Absent, they build the head every earlier run had, bit for bit.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..options import check_call_options
from ..plugins import Registry
from .bottleneck import Bottleneck
from .classifier import ACTIVATIONS, Classifier, MLPHead

MODALITIES = ("image", "text")
BOTTLENECK = "bottleneck"  # the option every image backbone takes (handled here, not by its builder)
HEAD_OPTIONS = ("head_hidden", "head_activation", "head_dropout")  # the head's options, also handled here
REGISTRY_OPTIONS = (BOTTLENECK, *HEAD_OPTIONS)  # never passed to a builder
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
            kept = {k: v for k, v in options.items() if k not in _WEIGHT_OPTIONS and k not in REGISTRY_OPTIONS}
            return int(self.build(image_size, **kept).out_features)


_REGISTRY = Registry("backbone", __package__, frozenset({"registry", "classifier", "blocks", "weights"}), BackboneError)
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
                      resolve: Callable[[], str] | None = None,
                      check: Callable[[dict[str, Any], int | None], None] | None = None,
                      ) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering an image backbone builder (text: `register_text_backbone`); `check(options,
    image_size)` checks what the signature cannot (a weights name, that named weights are cached), without a build."""
    if modality not in MODALITIES:
        raise BackboneError(f"backbone '{name}': modality must be one of {list(MODALITIES)}, got '{modality}'")

    def wrap(build: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        doc = (inspect.getdoc(build) or "").splitlines()
        _REGISTRY.add(name, BackboneSpec(name, modality, build, tuple(head_hidden), resolve, doc[0] if doc else "",
                                         check))
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
    """The folder or hub name a text backbone loads from: a registered name's `resolve()`, else the name itself
    ("~/models/x" expanded when that folder exists, as from_pretrained does not expand it)."""
    spec = _REGISTRY.find(name)
    if spec is None:
        expanded = os.path.expanduser(name)
        return expanded if expanded != name and os.path.isdir(expanded) else name
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
    own = {k: v for k, v in options.items() if k not in REGISTRY_OPTIONS}
    accepted = spec.options()
    unknown = sorted(set(own) - accepted) if accepted is not None else []
    if unknown:
        raise BackboneError(f"backbone '{name}' does not take option(s) {unknown}; it takes "
                            f"{sorted(accepted | {BOTTLENECK})} and the head options {list(HEAD_OPTIONS)}")
    head_options(name, spec, options)
    check_call_options(spec.build, own, where=f"backbone '{name}'", error=BackboneError, skip=("image_size",))
    width = options.get(BOTTLENECK)
    if width is not None and (isinstance(width, bool) or not isinstance(width, int) or width < 0):
        raise BackboneError(f"backbone '{name}': option 'bottleneck' must be a width (e.g. 256; 0 or null: off), "
                            f"got {width!r}")
    if spec.check is not None:
        spec.check(own, image_size)
    return spec


def head_options(name: str, spec: BackboneSpec, options: dict[str, Any]) -> tuple[tuple[int, ...], str, float]:
    """(hidden widths, activation, dropout) of the head, from the options `head_hidden` / `head_activation` /
    `head_dropout` (absent: the backbone's default widths, relu, 0); a bad value fails naming the option."""
    where = f"backbone '{name}': option"
    hidden = options.get("head_hidden")
    if hidden is None:
        hidden = spec.head_hidden
    elif not isinstance(hidden, (list, tuple)) or \
            any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden):
        raise BackboneError(f"{where} 'head_hidden' must be a list of positive widths (e.g. [256]; []: one linear "
                            f"layer), got {hidden!r}")
    activation = options.get("head_activation")
    if activation is not None and activation not in ACTIVATIONS:
        raise BackboneError(f"{where} 'head_activation' must be one of {list(ACTIVATIONS)}, got {activation!r}")
    dropout = options.get("head_dropout")
    if dropout is not None and (isinstance(dropout, bool) or not isinstance(dropout, (int, float))
                                or not 0 <= dropout < 1):
        raise BackboneError(f"{where} 'head_dropout' must be a probability in [0, 1), got {dropout!r}")
    for option, value in (("head_activation", activation), ("head_dropout", dropout)):
        if value is not None and not hidden:  # a linear head has no hidden activation to act on: say so
            raise BackboneError(f"{where} '{option}' acts on the head's hidden layers and this head has none: "
                                "give head_hidden too (e.g. [256])")
    return tuple(int(h) for h in hidden), activation or "relu", float(dropout or 0.0)


def build_model(backbone: str, num_classes: int, image_size: int, backbone_kwargs: dict[str, Any] | None = None,
                head_hidden: tuple[int, ...] | None = None) -> Classifier:
    """An image classifier: the named backbone (with option `bottleneck=W`: then fc W → BatchNorm → ReLU, whose
    output the methods align), then an MLP head: the option `head_hidden` (else the argument `head_hidden`, else
    the backbone's default widths; the digits CNN's is Ganin et al.'s fc100-fc100) with `head_activation` and
    `head_dropout` (module docstring)."""
    options = dict(backbone_kwargs or {})
    if head_hidden is not None:
        options.setdefault("head_hidden", list(head_hidden))
    spec = check_image_backbone(backbone, options, image_size)
    hidden, activation, dropout = head_options(backbone, spec, options)
    width = options.pop(BOTTLENECK, None)
    net = spec.build(image_size, **{k: v for k, v in options.items() if k not in HEAD_OPTIONS})
    if width:
        net = Bottleneck(net, width)
    head = MLPHead(net.out_features, num_classes, hidden=hidden, dropout=dropout, activation=activation)
    return Classifier(net, head, feature_dim=net.out_features, num_classes=num_classes)
