"""On-disk cache for generated domains (MNIST-M, synthetic digits): build once, then load in ~ms.

The file name carries a digest of (format version, domain name, every builder parameter), so a change
of any parameter, or of the cache format, reads a different file instead of a stale one. Writes are
atomic, and a damaged file is rebuilt with a warning rather than failing the run.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

from .domain import DigitDomain, DomainError

CACHE_FORMAT_VERSION = 1
CACHE_ENV_VAR = "DOMAINADAPT_CACHE"


def default_cache_dir() -> Path:
    """$DOMAINADAPT_CACHE if set (and non-empty), else ~/.cache/domainadapt."""
    env = os.environ.get(CACHE_ENV_VAR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "domainadapt"


def resolve_cache_dir(cache_dir: str | os.PathLike | None) -> Path:
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


def cache_path(cache_dir: str | os.PathLike | None, name: str, params: Mapping[str, object]) -> Path:
    """Path of the cache file for domain `name` built with `params` (JSON-serialisable values)."""
    key = json.dumps({"format": CACHE_FORMAT_VERSION, "name": name, **params}, sort_keys=True, default=str)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    tags = (("image_size", "s"), ("n", "n"), ("seed", "seed"))
    short = "-".join(f"{tag}{params[key]}" for key, tag in tags if key in params)
    stem = f"{name}-{short}-v{CACHE_FORMAT_VERSION}-{digest}" if short else f"{name}-v{CACHE_FORMAT_VERSION}-{digest}"
    return resolve_cache_dir(cache_dir) / f"{stem}.pt"


def load_or_build(
    name: str,
    params: Mapping[str, object],
    build: Callable[[], DigitDomain],
    cache_dir: str | os.PathLike | None = None,
) -> DigitDomain:
    """Return the cached domain for (name, params) if the file is intact, else build it and cache it."""
    path = cache_path(cache_dir, name, params)
    if path.exists():
        try:
            domain = DigitDomain.load(path)
            expected_size = params.get("image_size")
            if domain.name != name or (expected_size is not None and domain.image_size != expected_size):
                raise DomainError(f"cache file {path} holds {domain!r}, not {name!r} at size {expected_size}")
            return domain
        except DomainError as exc:
            warnings.warn(f"rebuilding damaged cache file {path}: {exc}", RuntimeWarning, stacklevel=2)
    domain = build()
    try:
        domain.save(path)
    except OSError as exc:  # a read-only or full disk costs a rebuild next time, not this run
        warnings.warn(f"could not write cache file {path}: {exc}", RuntimeWarning, stacklevel=2)
    return domain
