"""Any timm model as `timm:NAME` (`timm:resnet18`, `timm:convnext_atto`, `timm:vit_tiny_patch16_224.augreg_in21k`).

Built by `timm.create_model(NAME, pretrained=..., num_classes=0)`: timm's own way to drop the classifier, after
which the model returns pooled pre-logits features of width `head_hidden_size` (else `num_features`). Inputs in
[0, 1] are normalised inside with the mean/std of the model's pretrained config
(`timm.data.resolve_model_data_config`). Models built for one input size (`fixed_input_size` in their pretrained
config: ViT, Swin, ...) get `img_size=image_size`; timm resamples the position embeddings of pretrained weights.
Other timm options go in `model_kwargs` (e.g. drop_path_rate, or pretrained_cfg_overlay={"file": PATH} with
pretrained=true: timm's own loading of a file). `pretrained` is true (timm's weights, from the Hugging Face hub or
their URL, cached), false, or a local file (`pretrained=/path/to/model.safetensors`: a state dict or a checkpoint
holding one, loaded by `weights.py` with clear errors; its classifier keys dropped). Weights that are neither
cached nor downloadable fail in the check, before any data is read, naming the file to download. timm is imported
only when such a name is checked or built, never when the package is.
"""

from __future__ import annotations

import difflib
import functools
from typing import Any

from .extractor import ImageFeatureExtractor, building_on_meta, stack_trunk
from .registry import BackboneError, BackboneSpec, register_backbone_resolver
from .weights import check_hub_weights, check_url_weights, failure_reason, is_weights_path, load_weights_file, weights_file

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


def _check_pretrained_value(name: str, pretrained: Any) -> None:
    if not isinstance(pretrained, bool) and not is_weights_path(pretrained):
        raise BackboneError(f"backbone '{PREFIX}{name}': option 'pretrained' must be true, false or a weights file "
                            f"path (e.g. /path/to/model.safetensors), got {pretrained!r}")


def check_timm_weights(name: str, model_kwargs: dict[str, Any] | None = None) -> None:
    """timm's pretrained weights of `name` are cached or downloadable (else one line naming the file to get);
    a file given through model_kwargs pretrained_cfg_overlay={"file": PATH} must exist."""
    timm = import_timm(name)
    where = f"backbone '{PREFIX}{name}'"
    overlay = (model_kwargs or {}).get("pretrained_cfg_overlay") or {}
    if isinstance(overlay, dict) and overlay.get("file"):
        weights_file(overlay["file"], where, "model_kwargs.pretrained_cfg_overlay.file")
        return
    cfg = timm.models.get_pretrained_cfg(name, allow_unregistered=True)
    if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
        raise BackboneError(f"{where}: timm has no pretrained weights for '{name}' (option 'pretrained'); see "
                            "timm.list_pretrained()")
    try:  # the source timm itself picks (hub, URL, file); private in timm, so a fallback in the same order
        from timm.models._builder import _resolve_pretrained_source

        source, location = _resolve_pretrained_source({**cfg.to_dict(), **(overlay or {})})
    except (ImportError, AttributeError, TypeError):
        source, location = ("hf-hub", cfg.hf_hub_id) if cfg.hf_hub_id else ("url", cfg.url)
    if source == "hf-hub":
        repo, files = (location if isinstance(location, (list, tuple)) else
                       (location, ("model.safetensors", "pytorch_model.bin")))
        check_hub_weights(where, repo, (files,) if isinstance(files, str) else tuple(files), "pretrained")
    elif source == "url":
        check_url_weights(where, f"'{name}'", location, "pretrained")
    elif source == "file":
        weights_file(location, where, "pretrained")


def _download_error(err: Exception) -> bool:
    """A failed download: an OSError (URLError, requests' errors, a hub cache miss) or an HTTP client's error."""
    return isinstance(err, OSError) or type(err).__module__.split(".")[0] in ("huggingface_hub", "httpx", "requests")


def timm_backbone(name: str, image_size: int, pretrained: bool | str = False,
                  model_kwargs: dict[str, Any] | None = None) -> ImageFeatureExtractor:
    """`timm.create_model(name, num_classes=0)` as a feature extractor (see the module docstring)."""
    timm = import_timm(name)
    check_timm_name(name)
    _check_pretrained_value(name, pretrained)
    kwargs = dict(model_kwargs or {})
    fixed = _fixed_input_size(timm, name)
    if fixed:
        kwargs.setdefault("img_size", image_size)
    from_file = is_weights_path(pretrained)
    load = pretrained is True and not building_on_meta()
    try:
        net = _create(timm, name, load, kwargs, model_kwargs)
    except BackboneError:
        raise
    except TypeError as err:
        if fixed and "img_size" in str(err):
            size = timm.models.get_pretrained_cfg(name).input_size[-1]
            raise BackboneError(f"timm model '{name}' is built for {size}-px images and takes no img_size: "
                                f"set image_size {size}") from None
        raise BackboneError(f"timm model '{name}' cannot be built with {kwargs or 'no options'}: {err}") from None
    except (ValueError, AssertionError) as err:  # e.g. an image size the patch or window size does not divide
        raise BackboneError(f"timm model '{name}' cannot be built at image_size {image_size} "
                            f"with {kwargs or 'no options'}: {err}") from None
    if from_file and not building_on_meta():
        classifier = str(getattr(net, "pretrained_cfg", {}).get("classifier") or "")
        load_weights_file(net, pretrained, where=f"backbone '{PREFIX}{name}'", option="pretrained",
                          classifier=(classifier,) if classifier else ())
    stack_trunk(net)
    width = getattr(net, "head_hidden_size", None) or net.num_features
    data = timm.data.resolve_model_data_config(net)
    return ImageFeatureExtractor(net, width, data["mean"], data["std"])


def _create(timm: Any, name: str, load: bool, kwargs: dict[str, Any], model_kwargs: dict[str, Any] | None) -> Any:
    """`timm.create_model`; a download that fails after the check passed is the check's one line."""
    try:
        return timm.create_model(name, pretrained=load, num_classes=0, **kwargs)
    except Exception as err:
        if not (load and _download_error(err)):
            raise
        check_timm_weights(name, model_kwargs)  # names the file to get, when the cache is what is missing
        raise BackboneError(f"backbone '{PREFIX}{name}': timm's pretrained weights failed to load "
                            f"({failure_reason(err)}); pass pretrained=/path/to/file") from None


def _check(name: str, options: dict[str, Any], image_size: int | None) -> None:
    check_timm_name(name)
    pretrained = options.get("pretrained", False)
    _check_pretrained_value(name, pretrained)
    if is_weights_path(pretrained):
        weights_file(pretrained, f"backbone '{PREFIX}{name}'", "pretrained")
    elif pretrained is True:
        check_timm_weights(name, options.get("model_kwargs"))


@register_backbone_resolver
def resolve_timm(name: str) -> BackboneSpec | None:
    """The spec of `timm:NAME` (timm is not imported here: an unknown NAME fails in the spec's check), or None."""
    if not name.startswith(PREFIX):
        return None
    arch = name[len(PREFIX):]

    def build(image_size: int, pretrained: bool | str = False,
              model_kwargs: dict[str, Any] | None = None) -> ImageFeatureExtractor:
        return timm_backbone(arch, image_size, pretrained, model_kwargs)

    doc = (f"timm {arch} (pretrained=true for timm's weights, or a weights file; model_kwargs go to "
           "timm.create_model), a linear head")
    return BackboneSpec(name, "image", build, doc=doc, check=functools.partial(_check, arch))
