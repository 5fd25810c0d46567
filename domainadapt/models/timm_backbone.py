"""Any timm model as `timm:NAME` (`timm:resnet18`, `timm:convnext_atto`, `timm:vit_tiny_patch16_224.augreg_in21k`).

Built by `timm.create_model(NAME, pretrained=..., num_classes=0)`: timm's own way to drop the classifier, after
which the model returns pooled pre-logits features of width `head_hidden_size` (else `num_features`). Inputs in
[0, 1] are normalised inside with the mean/std of the model's pretrained config
(`timm.data.resolve_model_data_config`). Models built for one input size (`fixed_input_size` in their pretrained
config: ViT, Swin, ...) get `img_size=image_size`; timm resamples the position embeddings of pretrained weights.
Other timm options go in `model_kwargs` (e.g. drop_path_rate, or pretrained_cfg_overlay={"file": PATH} for weights
on disk). timm is imported only when such a name is checked or built, never when the package is.
"""

from __future__ import annotations

import difflib
import functools
from typing import Any

from .extractor import ImageFeatureExtractor, building_on_meta, stack_trunk
from .registry import BackboneError, BackboneSpec, register_backbone_resolver

PREFIX = "timm:"


def import_timm(name: str) -> Any:
    try:
        import timm
        import timm.data
    except ImportError:
        raise BackboneError(f"backbone '{PREFIX}{name}' needs timm: pip install timm") from None
    return timm


def check_timm_name(name: str) -> None:
    """A timm architecture (with or without a pretrained tag); an unknown one fails naming close timm names."""
    timm = import_timm(name)
    if name and timm.is_model(name):
        return
    arch = name.split(".", 1)[0]
    names = timm.list_models()
    similar = difflib.get_close_matches(arch, names, n=6, cutoff=0.6)
    similar += [n for n in timm.list_models(f"*{arch}*")[:6] if n not in similar] if arch else []
    hint = f"; similar: {similar[:8]}" if similar else ""
    raise BackboneError(f"unknown timm model '{name}' (backbone '{PREFIX}{name}'){hint}; see timm.list_models()")


def _fixed_input_size(timm: Any, name: str) -> bool:
    cfg = timm.models.get_pretrained_cfg(name, allow_unregistered=True)
    return bool(getattr(cfg, "fixed_input_size", False))


def timm_backbone(name: str, image_size: int, pretrained: bool = False,
                  model_kwargs: dict[str, Any] | None = None) -> ImageFeatureExtractor:
    """`timm.create_model(name, num_classes=0)` as a feature extractor (see the module docstring)."""
    timm = import_timm(name)
    check_timm_name(name)
    kwargs = dict(model_kwargs or {})
    fixed = _fixed_input_size(timm, name)
    if fixed:
        kwargs.setdefault("img_size", image_size)
    try:
        net = timm.create_model(name, pretrained=pretrained and not building_on_meta(), num_classes=0, **kwargs)
    except TypeError as err:
        if fixed and "img_size" in str(err):
            size = timm.models.get_pretrained_cfg(name).input_size[-1]
            raise BackboneError(f"timm model '{name}' is built for {size}-px images and takes no img_size: "
                                f"set image_size {size}") from None
        raise BackboneError(f"timm model '{name}' cannot be built with {kwargs or 'no options'}: {err}") from None
    except (ValueError, AssertionError) as err:  # e.g. an image size the patch or window size does not divide
        raise BackboneError(f"timm model '{name}' cannot be built at image_size {image_size} "
                            f"with {kwargs or 'no options'}: {err}") from None
    stack_trunk(net)
    width = getattr(net, "head_hidden_size", None) or net.num_features
    data = timm.data.resolve_model_data_config(net)
    return ImageFeatureExtractor(net, width, data["mean"], data["std"])


def _check(name: str, options: dict[str, Any], image_size: int | None) -> None:
    check_timm_name(name)


@register_backbone_resolver
def resolve_timm(name: str) -> BackboneSpec | None:
    """The spec of `timm:NAME` (timm is not imported here: an unknown NAME fails in the spec's check), or None."""
    if not name.startswith(PREFIX):
        return None
    arch = name[len(PREFIX):]

    def build(image_size: int, pretrained: bool = False,
              model_kwargs: dict[str, Any] | None = None) -> ImageFeatureExtractor:
        return timm_backbone(arch, image_size, pretrained, model_kwargs)

    doc = f"timm {arch} (pretrained=true for timm's weights; model_kwargs go to timm.create_model), a linear head"
    return BackboneSpec(name, "image", build, doc=doc, check=functools.partial(_check, arch))
