"""Domains by name: a registry of builders, plus the `file:` and `folder:` forms.

Built-in builders live in sibling modules that register themselves; they are imported on first use
(not at package import) so `import domainadapt.data` stays cheap.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from . import files
from .domain import DigitDomain, DomainError
from .splits import stratified_split

FILE_PREFIX = "file:"
FOLDER_PREFIX = "folder:"
SHUFFLED_PREFIX = "shuffled:"  # a domain whose labels are permuted across its examples (a source that should hurt)
SHUFFLE_SEED = 20190615
_BUILTIN_MODULES = ("mnist", "mnist_m", "syndigits", "optdigits", "torchvision_digits")


class DomainBuilder(Protocol):
    def __call__(
        self, *, root: Path | None, image_size: int, download: bool, cache_dir: Path | None, seed: int
    ) -> DigitDomain: ...


@dataclass(frozen=True)
class _Entry:
    builder: DomainBuilder
    description: str


_REGISTRY: dict[str, _Entry] = {}
_builtins_loaded = False


def register_domain(name: str, *, description: str) -> Callable[[DomainBuilder], DomainBuilder]:
    """Decorator: register `builder(root=, image_size=, download=, cache_dir=, seed=) -> DigitDomain`."""
    if not isinstance(name, str) or not name or ":" in name:
        raise DomainError(f"domain name must be a non-empty string without ':', got {name!r}")

    def decorate(builder: DomainBuilder) -> DomainBuilder:
        old = _REGISTRY.get(name)
        if old is not None and _identity(old.builder) != _identity(builder):  # re-import is fine, a clash is not
            raise DomainError(f"domain {name!r} is already registered (by {old.builder!r})")
        _REGISTRY[name] = _Entry(builder, description)
        return builder

    return decorate


def _identity(fn: object) -> tuple[object, object]:
    return getattr(fn, "__module__", None), getattr(fn, "__qualname__", id(fn))


def _ensure_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        for module in _BUILTIN_MODULES:
            importlib.import_module(f"{__package__}.{module}")
        _builtins_loaded = True


def is_domain_name(name: str) -> bool:
    """A registered name or one of the prefixed forms (file:, folder:, shuffled:NAME)."""
    if name.startswith(SHUFFLED_PREFIX):
        return is_domain_name(name[len(SHUFFLED_PREFIX) :])
    return name.startswith((FILE_PREFIX, FOLDER_PREFIX)) or name in available_domains()


def available_domains() -> list[str]:
    """Sorted registered names (also accepted: 'file:PATH' and 'folder:PATH')."""
    _ensure_builtins()
    return sorted(_REGISTRY)


def describe_domains() -> dict[str, str]:
    """{name: one-line description} for every registered domain."""
    _ensure_builtins()
    return {name: _REGISTRY[name].description for name in sorted(_REGISTRY)}


def load_domain(
    name: str,
    *,
    root: str | os.PathLike | None = None,
    image_size: int = 32,
    download: bool = False,
    cache_dir: str | os.PathLike | None = None,
    seed: int = 0,
) -> DigitDomain:
    """Build or load domain `name`: a registered name, 'file:PATH' (a DigitDomain.save file),
    'folder:PATH' (an ImageFolder of class sub-folders) or 'shuffled:NAME' (NAME with its labels permuted across
    examples by a fixed seed: the images carry no information about their labels, the control source of a
    negative-transfer study, Wang et al. 2019). `seed` only affects generated domains."""
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size <= 0:
        raise DomainError(f"image_size must be a positive int, got {image_size!r}")
    if not isinstance(name, str) or not name:
        raise DomainError(f"domain name must be a non-empty string, got {name!r}")
    if name.startswith(SHUFFLED_PREFIX):
        inner = load_domain(name[len(SHUFFLED_PREFIX) :], root=root, image_size=image_size, download=download,
                            cache_dir=cache_dir, seed=seed)
        order = torch.randperm(len(inner), generator=torch.Generator().manual_seed(SHUFFLE_SEED))
        return DigitDomain(name=name, images=inner.images, labels=inner.labels[order].clone(), classes=inner.classes)
    if name.startswith(FILE_PREFIX) or name.startswith(FOLDER_PREFIX):
        if name.startswith(FILE_PREFIX):
            return files.load_file_domain(name[len(FILE_PREFIX) :], image_size=image_size)
        return files.load_folder_domain(name[len(FOLDER_PREFIX) :], image_size=image_size)
    _ensure_builtins()
    entry = _REGISTRY.get(name)
    if entry is None:
        raise DomainError(
            f"unknown domain {name!r}; available: {', '.join(available_domains())} "
            f"(or 'file:PATH', 'folder:PATH')"
        )
    domain = entry.builder(
        root=Path(root).expanduser() if root is not None else None,
        image_size=image_size,
        download=bool(download),
        cache_dir=Path(cache_dir).expanduser() if cache_dir is not None else None,
        seed=int(seed),
    )
    if not isinstance(domain, DigitDomain) or domain.image_size != image_size:
        raise DomainError(f"builder for {name!r} returned {domain!r}, expected a DigitDomain of size {image_size}")
    return domain


def load_splits(
    name: str, *, test_fraction: float = 0.2, split_seed: int = 0, **load_kwargs: object
) -> dict[str, DigitDomain]:
    """{'train', 'test'} parts of a domain, by a fixed seeded stratified split (named '<name>/train' ...)."""
    domain = load_domain(name, **load_kwargs)  # type: ignore[arg-type]
    train_idx, test_idx = stratified_split(domain.labels, test_fraction, split_seed)
    if train_idx.numel() == 0 or test_idx.numel() == 0:
        raise DomainError(
            f"domain {domain.name!r} ({len(domain)} items) is too small for test_fraction={test_fraction}: "
            f"{train_idx.numel()} train, {test_idx.numel()} test"
        )
    return {
        "train": domain.subset(train_idx, name=f"{domain.name}/train"),
        "test": domain.subset(test_idx, name=f"{domain.name}/test"),
    }


def check_compatible(*domains: DigitDomain) -> None:
    """Raise DomainError unless all domains share one class tuple and one image size."""
    if not domains:
        return
    first = domains[0]
    for other in domains[1:]:
        if other.classes != first.classes:
            raise DomainError(
                f"domains {first.name!r} and {other.name!r} have different classes: "
                f"{first.classes!r} vs {other.classes!r}"
            )
        if other.image_size != first.image_size:
            raise DomainError(
                f"domains {first.name!r} and {other.name!r} have different image sizes: "
                f"{first.image_size} vs {other.image_size}"
            )
