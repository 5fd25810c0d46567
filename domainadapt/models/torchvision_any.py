"""Any torchvision classification model by its plain name (`--backbone mobilenet_v3_small`), without its classifier.

Names are those of `torchvision.models.list_models(module=torchvision.models)` (classification only; the four
ResNets of `resnet.py` are registered there and take precedence, with the same behaviour). Built through
`torchvision.models.get_model`; `weights` is any weights name of the model ("DEFAULT", "IMAGENET1K_V2", or the
full "ResNet50_Weights.IMAGENET1K_V2"), or a local file (`weights=/path/to/resnet50.pth`: a state dict or a
checkpoint holding one, see `weights.py`), and inputs in [0, 1] are normalised inside with the mean/std of those
weights' transforms (ImageNet's when there are none, and for a file). Named weights neither in the torch hub cache
nor downloadable fail in the check, before any data is read, naming the URL and the path to put the file in.
The final classifier layer (the last `nn.Linear`: ResNet `fc`, MobileNet/EfficientNet/ConvNeXt `classifier[-1]`,
ViT `heads.head`; SqueezeNet's 1×1 conv) becomes an `nn.Identity` and its input width is `out_features`.
torchvision is imported only when such a name is looked up (about 3 s), never when the package is.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from typing import Any

from torch import nn

from .extractor import IMAGENET_MEAN, IMAGENET_STD, ImageFeatureExtractor, building_on_meta, replace_module, stack_trunk
from .registry import BackboneError, BackboneSpec, register_backbone_resolver
from .weights import (
    check_torchvision_weights,
    is_weights_path,
    load_weights_file,
    torchvision_download_failed,
    weights_file,
)

_NAME = re.compile(r"[a-z][a-z0-9_]*")  # every torchvision model name; a hub name like "bert-base-uncased" is not
_NO_AUX = ("googlenet", "inception_v3")  # their auxiliary classifiers would change what forward returns in training
_VIT_MODULE = "torchvision.models.vision_transformer"  # built for one image size (its position embeddings)


@functools.cache
def torchvision_model_names() -> frozenset[str]:
    if importlib.util.find_spec("torchvision") is None:
        return frozenset()
    import torchvision.models

    return frozenset(torchvision.models.list_models(module=torchvision.models))


def resolve_weights(name: str, weights: str | None) -> Any:
    """The weights enum member named `weights` (None, or a local file: none); a wrong name fails listing the right
    ones."""
    if weights is None or is_weights_path(weights):
        return None
    import torchvision.models as tvm

    enum = tvm.get_model_weights(name)
    short = weights.split(".", 1)[1] if weights.startswith(f"{enum.__name__}.") else weights
    if short not in enum.__members__:
        raise BackboneError(f"backbone '{name}': unknown weights '{weights}'; choose one of {list(enum.__members__)}")
    return enum[short]


def _expected_size(name: str, weights: Any) -> int | None:
    """The one image size a torchvision ViT takes with these weights (None: any size, or set by the build)."""
    import torchvision.models as tvm

    if tvm.get_model_builder(name).__module__ != _VIT_MODULE or weights is None:
        return None
    return int(weights.meta["min_size"][0])


def _check_size(name: str, weights: Any, image_size: int) -> None:
    expected = _expected_size(name, weights)
    if expected is not None and expected != image_size:
        raise BackboneError(f"backbone '{name}' with weights '{weights.name}' takes {expected}-px images, not "
                            f"image_size {image_size}: set image_size {expected} (or weights=None)")


def _last_classifier(net: nn.Module) -> tuple[str, nn.Module]:
    """The final classifier layer: the last Linear registered, else the last 1×1 Conv2d (SqueezeNet)."""
    linears = [(n, m) for n, m in net.named_modules() if isinstance(m, nn.Linear)]
    convs = [(n, m) for n, m in net.named_modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)]
    found = linears or convs
    if not found:
        raise BackboneError(f"torchvision model {type(net).__name__}: no final Linear layer to remove")
    return found[-1]


def torchvision_backbone(name: str, image_size: int, weights: str | None = None,
                         model_kwargs: dict[str, Any] | None = None) -> ImageFeatureExtractor:
    """`torchvision.models.get_model(name, weights=...)` as a feature extractor (see the module docstring)."""
    import torchvision.models as tvm

    member = resolve_weights(name, weights)
    _check_size(name, member, image_size)
    kwargs = dict(model_kwargs or {})
    if name in _NO_AUX:
        kwargs.setdefault("aux_logits", False)
    if tvm.get_model_builder(name).__module__ == _VIT_MODULE:
        kwargs.setdefault("image_size", _expected_size(name, member) or image_size)
    try:
        net = tvm.get_model(name, weights=None if building_on_meta() else member, **kwargs)
    except (TypeError, ValueError) as err:
        raise BackboneError(f"backbone '{name}' cannot be built with {kwargs or 'no options'}: {err}") from None
    except OSError as err:  # a download that fails after the check passed (URLError is an OSError)
        raise torchvision_download_failed(f"backbone '{name}'", member, err) from None
    stack_trunk(net)
    path, layer = _last_classifier(net)
    replace_module(net, path, nn.Identity())
    if is_weights_path(weights) and not building_on_meta():
        load_weights_file(net, weights, where=f"backbone '{name}'", option="weights", classifier=(path,))
    width = layer.in_features if isinstance(layer, nn.Linear) else layer.in_channels
    transforms = member.transforms() if member is not None else None
    mean = getattr(transforms, "mean", None) or IMAGENET_MEAN
    std = getattr(transforms, "std", None) or IMAGENET_STD
    return ImageFeatureExtractor(net, width, mean, std)


def check_torchvision_options(name: str, options: dict[str, Any], image_size: int | None) -> None:
    """A weights file that exists, or a weights name of model `name` that fits `image_size` and is cached or
    downloadable (also the check of resnet.py's ResNets)."""
    weights = options.get("weights")
    if is_weights_path(weights):
        weights_file(weights, f"backbone '{name}'", "weights")
        return
    member = resolve_weights(name, weights)
    if image_size is not None:
        _check_size(name, member, image_size)
    check_torchvision_weights(f"backbone '{name}'", member)


@register_backbone_resolver
def resolve_torchvision(name: str) -> BackboneSpec | None:
    """The spec of a torchvision classification model named `name`, or None."""
    if not _NAME.fullmatch(name) or name not in torchvision_model_names():
        return None

    def build(image_size: int, weights: str | None = None,
              model_kwargs: dict[str, Any] | None = None) -> ImageFeatureExtractor:
        return torchvision_backbone(name, image_size, weights, model_kwargs)

    doc = (f"torchvision {name} (weights=DEFAULT or a .pth file for pretrained; model_kwargs go to get_model), "
           "a linear head")
    return BackboneSpec(name, "image", build, doc=doc, check=functools.partial(check_torchvision_options, name))
