"""Pretrained weights of image backbones: local files, and named weights checked before any data is read.

A local file (`weights=/path/to/file.pth` for torchvision, `pretrained=/path/to/file` for timm) is a plain state
dict or a training checkpoint that holds one (`{"state_dict": ...}` as TLlib and most training scripts save,
`{"model": ...}` as torchvision's reference scripts do), its keys possibly prefixed `module.` (saved from DDP) or
`backbone.` (TLlib's `ImageClassifier`). It is read with `torch.load(weights_only=True)` (or safetensors): no
code runs from the file. The classifier it was trained with (`fc.*`, `classifier.*`, `head.*`, ...) has no place
in a backbone whose classifier was removed, so those keys are dropped (a warning lists them with their shapes,
which tell how many classes the file was trained on); any other key that does not fit is one error listing them.

Named weights (torchvision's `DEFAULT`, timm's `pretrained=true`) are downloaded on first use into a cache. Our
machines have no internet, so `check_torchvision_weights` / `check_hub_weights` (run by the backbone's check, in
`runs.check_inputs`, before any data is read) look in the cache and, when the file is not there, try the URL
once (a HEAD request, `probe_download`): a failure is one line naming the weights, the URL and the path to put
the file in, never a URLError traceback half-way into building the model. Code that plans runs without building
them (a dry run on an offline machine) checks inside `weights_not_required()`.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import pickle
import re
import urllib.request
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from .extractor import building_on_meta
from .registry import BackboneError

WEIGHT_FILE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".tar", ".safetensors")
# the classifier (and TLlib's bottleneck) of the network the file was trained as: never part of our backbone
CLASSIFIER_PREFIXES = ("fc", "classifier", "head", "heads", "bottleneck")
_CHECKPOINT_KEYS = ("state_dict", "model", "model_state_dict", "module")  # where checkpoints keep the state dict
_PREFIXES = ("module.", "backbone.", "model.")  # DDP; TLlib's ImageClassifier; Lightning-style wrappers
PROBE_TIMEOUT_S = 5.0
_REACHABLE: set[str] = set()  # URLs a probe reached in this process: checked twice per run, probed once
_CHECK_AVAILABLE = contextvars.ContextVar("check_weights_available", default=True)


@contextlib.contextmanager
def weights_not_required() -> Iterator[None]:
    """Within it, checks skip whether named weights are cached or downloadable (names, options and files are still
    checked): for planning runs that will not build a model here (a `--dry-run` listing runs on an offline
    machine)."""
    token = _CHECK_AVAILABLE.set(False)
    try:
        yield
    finally:
        _CHECK_AVAILABLE.reset(token)


def _skip_availability() -> bool:
    """True on the meta device (a build that loads nothing: block counts, feature widths) and inside
    `weights_not_required()`."""
    return building_on_meta() or not _CHECK_AVAILABLE.get()


def is_weights_path(value: Any) -> bool:
    """True for a value meant as a file: a path object, or a string with a path separator, starting with '~' or
    '.', or ending in a weights-file suffix. Weights names ("DEFAULT", "ResNet50_Weights.IMAGENET1K_V2") are not."""
    if isinstance(value, os.PathLike):
        return True
    if not isinstance(value, str) or not value:
        return False
    return "/" in value or "\\" in value or value.startswith(("~", ".")) or \
        value.lower().endswith(WEIGHT_FILE_SUFFIXES)


def weights_file(value: str | os.PathLike, where: str, option: str) -> Path:
    """The existing file `value` names; a missing one fails naming it."""
    path = Path(value).expanduser()
    if not path.is_file():
        raise BackboneError(f"{where}: option '{option}': no weights file at {path}")
    return path


def _one_line(err: object) -> str:
    text = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", str(err)).split())  # no terminal colours, one line
    return (text[:200] + "...") if len(text) > 200 else (text or type(err).__name__)


def _unwrap(obj: Any) -> Any:
    """The state dict inside a checkpoint dict (`{"state_dict": ...}`, `{"model": ...}`, nested)."""
    while isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        inner = next((obj[k] for k in _CHECKPOINT_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    return obj


def read_state_dict(path: str | os.PathLike, where: str, option: str) -> dict[str, torch.Tensor]:
    """The tensors of a weights file: a state dict, or the one a checkpoint dict holds; `module.` prefixes off."""
    path = weights_file(path, where, option)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(path))
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same one-line error
        why = ("it holds pickled objects, not only tensors" if isinstance(err, pickle.UnpicklingError)
               else _one_line(err))
        raise BackboneError(f"{where}: option '{option}': {path} cannot be read as weights with "
                            f"torch.load(weights_only=True) ({why}); save a state dict: "
                            "torch.save(model.state_dict(), PATH)") from None
    state = _unwrap(obj)
    tensors = {str(k): v for k, v in state.items() if isinstance(v, torch.Tensor)} if isinstance(state, Mapping) else {}
    if not tensors:
        top = sorted(map(str, obj))[:8] if isinstance(obj, Mapping) else type(obj).__name__
        raise BackboneError(f"{where}: option '{option}': {path} holds no state dict (found {top}); expected "
                            "a state dict or a checkpoint with 'state_dict' or 'model'")
    return {k.removeprefix("module."): v for k, v in tensors.items()}


def _align_prefix(state: dict[str, torch.Tensor], wanted: set[str]) -> dict[str, torch.Tensor]:
    """`state` with the wrapper prefix (`module.`, `backbone.`, `model.`) off, when that makes more keys fit; keys
    outside the prefix (TLlib's `bottleneck.*`, `head.*`) are kept as they are."""
    best, best_hits = state, len(wanted.intersection(state))
    for prefix in _PREFIXES:
        if not any(k.startswith(prefix) for k in state):
            continue
        moved = {k.removeprefix(prefix): v for k, v in state.items()}
        hits = len(wanted.intersection(moved))
        if hits > best_hits:
            best, best_hits = moved, hits
    return best


def _under(key: str, prefixes: Iterable[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def _listed(keys: list[str], limit: int = 6) -> str:
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return f"{keys[:limit]}{more}"


def load_weights_file(net: nn.Module, path: str | os.PathLike, *, where: str, option: str,
                      classifier: Iterable[str] = ()) -> None:
    """Load the weights file `path` into `net` (a network whose classifier was removed; `classifier`: where it
    was, e.g. "heads.head"). Every parameter and buffer of `net` must come from the file, with its shape; the
    file's classifier keys are dropped with a warning; anything else that does not fit is one BackboneError."""
    state = read_state_dict(path, where, option)
    mine = net.state_dict()
    state = _align_prefix(state, set(mine))
    drop = (*CLASSIFIER_PREFIXES, *classifier)
    ignored = {k: tuple(v.shape) for k, v in state.items() if k not in mine and _under(k, drop)}
    unexpected = [k for k in state if k not in mine and k not in ignored]
    missing = [k for k in mine if k not in state and not k.endswith("num_batches_tracked")]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(mine[k].shape)}" for k in mine
             if k in state and state[k].shape != mine[k].shape]
    if missing or unexpected or wrong:
        parts = [f"{len(missing)} missing keys {_listed(missing)}" if missing else "",
                 f"{len(unexpected)} unexpected keys {_listed(unexpected)}" if unexpected else "",
                 f"{len(wrong)} of another shape (file vs model) {_listed(wrong, 3)}" if wrong else ""]
        raise BackboneError(f"{where}: option '{option}': {path} does not fit the network "
                            f"({type(net).__name__}): {'; '.join(p for p in parts if p)}")
    if ignored:
        shapes = ", ".join(f"{k} {list(s)}" for k, s in list(ignored.items())[:6])
        warnings.warn(f"{where}: the classifier of {path} is not loaded (a new head is trained): {shapes}",
                      stacklevel=2)
    net.load_state_dict({k: v for k, v in state.items() if k in mine}, strict=False)


def probe_download(url: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Raise (URLError, OSError) when `url` cannot be reached: one HEAD request, nothing downloaded."""
    with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
        pass


def _downloadable(url: str) -> str | None:
    """None when `url` answers (remembered for the process), else why not, in one line."""
    if url in _REACHABLE:
        return None
    try:
        probe_download(url)
    except Exception as err:  # noqa: BLE001 - URLError, timeouts, HTTP errors: all mean "not downloadable"
        return failure_reason(err)
    _REACHABLE.add(url)
    return None


def failure_reason(err: BaseException) -> str:
    """Why a download failed, in one short line (a URLError's own reason, not its "<urlopen error ...>" text)."""
    reason = getattr(err, "reason", None)
    return _one_line(err if reason is None else reason)


def torchvision_cache_file(url: str) -> Path:
    """Where torchvision keeps (and looks for) weights downloaded from `url`: <torch hub dir>/checkpoints/<name>."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def missing_weights_error(where: str, what: str, url: str, put: str, option: str, reason: str) -> BackboneError:
    return BackboneError(f"{where}: weights {what} are not in the local cache and cannot be downloaded ({reason}): "
                         f"download {url} to {put} (or pass {option}=/path/to/file.pth)")


def torchvision_download_failed(where: str, member: Any, err: BaseException) -> BackboneError:
    """The one-line error for named torchvision weights whose download failed while building (after the check)."""
    return missing_weights_error(where, f"'{member}'", member.url, str(torchvision_cache_file(member.url)), "weights",
                                 failure_reason(err))


def check_torchvision_weights(where: str, member: Any) -> None:
    """Named torchvision weights (a weights enum member; None: none) are cached or downloadable, else one line.
    Not checked on the meta device or inside `weights_not_required()`."""
    if member is None or _skip_availability():
        return
    url = str(member.url)
    cached = torchvision_cache_file(url)
    if cached.is_file():
        return
    reason = _downloadable(url)
    if reason is not None:
        raise missing_weights_error(where, f"'{member}'", url, str(cached), "weights", reason)


def hub_weights_cached(repo_id: str, filenames: Iterable[str]) -> bool:
    """True when one of `filenames` of the Hugging Face repo is in the local huggingface_hub cache."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    return any(isinstance(try_to_load_from_cache(repo_id, f), str) for f in filenames)


def check_hub_weights(where: str, repo_id: str, filenames: tuple[str, ...], option: str) -> None:
    """Weights of a Hugging Face hub repo (timm's pretrained weights) are cached or downloadable, else one line
    naming the file to download (the cache's exact folder carries a revision hash, so: pass the file instead)."""
    if _skip_availability() or hub_weights_cached(repo_id, filenames):
        return
    url = f"https://huggingface.co/{repo_id}/resolve/main/{filenames[0]}"
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    reason = "HF_HUB_OFFLINE is set" if offline else _downloadable(url)
    if reason is not None:
        raise BackboneError(f"{where}: weights '{repo_id}' are not in the Hugging Face cache and cannot be "
                            f"downloaded ({reason}): download {url} and pass {option}=/path/to/{filenames[0]} "
                            f"(or fill the cache where there is internet: huggingface-cli download {repo_id})")


def check_url_weights(where: str, what: str, url: str, option: str) -> None:
    """Weights at a plain URL, cached the torch hub way (timm's older weights), are cached or downloadable."""
    cached = torchvision_cache_file(url)
    if _skip_availability() or cached.is_file():
        return
    reason = _downloadable(url)
    if reason is not None:
        raise missing_weights_error(where, what, url, str(cached), option, reason)
