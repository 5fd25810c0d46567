"""Domains by name: a registry of builders, plus the `file:` and `folder:` forms (in memory) and the file-backed
forms `office31:amazon` (a benchmark family, benchmarks.py), `lazy_folder:PATH` and `list:PATH` (users' images),
`shards:PATH` (WebDataset tar shards of either, shards.py).

In-memory domains (DigitDomain) are decoded up front; file-backed ones (ImageFileDomain) decode per item, for
datasets that do not fit in memory. Built-in builders live in sibling modules that register themselves; they are
imported on first use (not at package import) so `import domainadapt.data` stays cheap.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from . import benchmarks, files, shards
from .domain import DigitDomain, DomainError
from .image_files import ImageFileDomain
from .image_lists import read_image_folder, read_image_list
from .splits import stratified_split

FILE_PREFIX = "file:"
FOLDER_PREFIX = "folder:"
SHUFFLED_PREFIX = "shuffled:"  # a domain whose labels are permuted across its examples (a source that should hurt)
SHUFFLE_SEED = 20190615
LAZY_FOLDER_PREFIX = "lazy_folder:"  # an ImageFolder tree, decoded per item
LIST_PREFIX = "list:"  # an image-list file ("relative/path label" lines), decoded per item
SHARDS_PREFIX = "shards:"  # a folder of WebDataset tar shards (shards.py), decoded per item
_LAZY_PREFIXES = (LAZY_FOLDER_PREFIX, LIST_PREFIX, SHARDS_PREFIX)
TARGET_TEST = ("auto", "whole", "split")  # load_splits: the protocol's default, the whole domain, a held-out split
Domain = DigitDomain | ImageFileDomain
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
    """A registered name, a benchmark domain (office31:amazon) or a prefixed form (file:, folder:, lazy_folder:,
    list:, shuffled:NAME)."""
    if name.startswith(SHUFFLED_PREFIX):
        return is_domain_name(name[len(SHUFFLED_PREFIX) :])
    return (name.startswith((FILE_PREFIX, FOLDER_PREFIX, *_LAZY_PREFIXES))
            or benchmarks.is_benchmark_name(name) or name in available_domains())


def is_lazy_name(name: str) -> bool:
    """Does `name` load as a file-backed ImageFileDomain (decoded per item) rather than an in-memory domain?"""
    if name.startswith(SHUFFLED_PREFIX):
        return is_lazy_name(name[len(SHUFFLED_PREFIX) :])
    return name.startswith(_LAZY_PREFIXES) or benchmarks.is_benchmark_family(name)


def available_domains() -> list[str]:
    """Sorted registered and benchmark names (also accepted: 'file:PATH', 'folder:PATH', 'lazy_folder:PATH',
    'list:PATH', 'shards:PATH', 'shuffled:NAME')."""
    _ensure_builtins()
    return sorted([*_REGISTRY, *benchmarks.benchmark_names()])


def describe_domains() -> dict[str, str]:
    """{name: one-line description} for every registered and benchmark domain."""
    _ensure_builtins()
    described = {name: _REGISTRY[name].description for name in _REGISTRY}
    described.update(benchmarks.describe_benchmarks())
    return dict(sorted(described.items()))


def load_domain(
    name: str,
    *,
    root: str | os.PathLike | None = None,
    image_size: int = 32,
    download: bool = False,
    cache_dir: str | os.PathLike | None = None,
    seed: int = 0,
    check_counts: bool = True,
) -> Domain:
    """Build or load domain `name`: a registered name, 'file:PATH' (a DigitDomain.save file),
    'folder:PATH' (an ImageFolder of class sub-folders) or 'shuffled:NAME' (NAME with its labels permuted across
    examples by a fixed seed: the images carry no information about their labels, the control source of a
    negative-transfer study, Wang et al. 2019). `seed` only affects generated domains.

    File-backed forms return an ImageFileDomain of the whole domain (a DomainNet domain: its train and test lists
    together): 'office31:amazon' & co. (benchmarks.py; `check_counts` checks the image counts), 'lazy_folder:PATH'
    (an ImageFolder tree), 'list:PATH' (an image-list file) and 'shards:PATH' (WebDataset shards written by
    `domainadapt shards`; official train/test parts when written from DomainNet); items are resized to image_size."""
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size <= 0:
        raise DomainError(f"image_size must be a positive int, got {image_size!r}")
    if not isinstance(name, str) or not name:
        raise DomainError(f"domain name must be a non-empty string, got {name!r}")
    if is_lazy_name(name):
        parts = _lazy_parts(name, root=root, image_size=image_size, download=download, check_counts=check_counts)
        return parts["all"] if "all" in parts else _concat(name, parts["train"], parts["test"])
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
            f"(or 'file:PATH', 'folder:PATH', 'lazy_folder:PATH', 'list:PATH', 'shards:PATH')"
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


def load_file_parts(name: str, *, root: str | os.PathLike | None = None, image_size: int = 224,
                    check_counts: bool = True, download: bool = False) -> dict[str, ImageFileDomain]:
    """{'all': domain} or its official {'train', 'test'} parts (DomainNet) of a file-backed name, before any split:
    what `domainadapt shards` packs."""
    if not is_lazy_name(name):
        raise DomainError(f"{name!r} is not a file-backed domain (office31:…, domainnet:…, lazy_folder:PATH, "
                          f"list:PATH, shards:PATH)")
    return _lazy_parts(name, root=root, image_size=image_size, download=download, check_counts=check_counts)


def _lazy_parts(name: str, *, root: str | os.PathLike | None, image_size: int, download: bool,
                check_counts: bool) -> dict[str, ImageFileDomain]:
    """{'all': domain} or {'train', 'test'} (official lists) of a file-backed name, items resized to image_size."""
    if name.startswith(SHUFFLED_PREFIX):
        inner = _lazy_parts(name[len(SHUFFLED_PREFIX) :], root=root, image_size=image_size, download=download,
                            check_counts=check_counts)
        generator = torch.Generator().manual_seed(SHUFFLE_SEED)
        return {part: d.with_labels(d.labels[torch.randperm(len(d), generator=generator)].clone(),
                                    name=name if part == "all" else f"{name}/{part}") for part, d in inner.items()}
    if benchmarks.is_benchmark_family(name):
        return benchmarks.load_benchmark(name, root=root, image_size=image_size, check_counts=check_counts,
                                         download=download)
    if name.startswith(SHARDS_PREFIX):
        return shards.load_shards(name[len(SHARDS_PREFIX) :], image_size=image_size)
    if name.startswith(LIST_PREFIX):
        paths, labels, classes = read_image_list(name[len(LIST_PREFIX) :])
    else:
        paths, labels, classes = read_image_folder(name[len(LAZY_FOLDER_PREFIX) :])
    return {"all": ImageFileDomain(name, paths, torch.tensor(labels, dtype=torch.int64), classes,
                                   transform="resize", image_size=image_size)}


def _concat(name: str, a: ImageFileDomain, b: ImageFileDomain) -> ImageFileDomain:
    spans = None if a.spans is None or b.spans is None else torch.cat([a.spans, b.spans])
    if (a.spans is None) != (b.spans is None):
        raise DomainError(f"{name}: cannot join a sharded and an unsharded part")
    return ImageFileDomain(name, [*a.paths, *b.paths], torch.cat([a.labels, b.labels]), a.classes,
                           transform=a.transform, image_size=a.image_size, protocol="whole", spans=spans)


def load_splits(
    name: str, *, test_fraction: float = 0.2, split_seed: int = 0, target_test: str = "auto",
    **load_kwargs: object
) -> dict[str, Domain]:
    """{'train', 'test'} parts of a domain (named '<name>/train' ...). In-memory domains: a fixed seeded stratified
    split. File-backed ones follow their protocol, recorded in each part's `protocol`: `target_test` 'auto' is
    'whole' for Office-31 / Office-Home / VisDA (the whole domain is both parts, as the papers do), the official
    lists for DomainNet, 'split' for lazy_folder: and list: domains; 'whole' or 'split' asks for that instead."""
    if target_test not in TARGET_TEST:
        raise DomainError(f"target_test must be one of {', '.join(TARGET_TEST)}, got {target_test!r}")
    if is_lazy_name(name):
        return _lazy_splits(name, test_fraction, split_seed, target_test, **load_kwargs)
    if target_test == "whole":
        raise DomainError(f"target_test='whole' applies to file-backed domains; {name!r} is in memory (use 'split')")
    load_kwargs.pop("check_counts", None)
    domain = load_domain(name, **load_kwargs)  # type: ignore[arg-type]
    return _split(domain, test_fraction, split_seed)


def _lazy_splits(name: str, test_fraction: float, split_seed: int, target_test: str,
                 **load_kwargs: Any) -> dict[str, Domain]:
    load_kwargs.pop("cache_dir", None)
    load_kwargs.pop("seed", None)
    image_size = load_kwargs.pop("image_size", 32)
    parts = _lazy_parts(name, image_size=image_size, **{"root": None, "download": False, "check_counts": True,
                                                        **load_kwargs})
    if "all" not in parts:  # official train/test lists (DomainNet)
        if target_test != "auto":
            raise DomainError(f"{name} has official train/test lists; target_test must be 'auto', got {target_test!r}")
        return {"train": parts["train"], "test": parts["test"]}
    whole = parts["all"]
    base = name[len(SHUFFLED_PREFIX):] if name.startswith(SHUFFLED_PREFIX) else name
    mode = target_test if target_test != "auto" else (
        "whole" if benchmarks.is_benchmark_family(base) and benchmarks.protocol_of(base) == "whole" else "split")
    if mode == "whole":
        return {part: whole._replace(name=f"{whole.name}/{part}", protocol="whole") for part in ("train", "test")}
    return _split(whole, test_fraction, split_seed)


def _split(domain: Domain, test_fraction: float, split_seed: int) -> dict[str, Domain]:
    train_idx, test_idx = stratified_split(domain.labels, test_fraction, split_seed)
    if train_idx.numel() == 0 or test_idx.numel() == 0:
        raise DomainError(
            f"domain {domain.name!r} ({len(domain)} items) is too small for test_fraction={test_fraction}: "
            f"{train_idx.numel()} train, {test_idx.numel()} test"
        )
    parts = {"train": domain.subset(train_idx, name=f"{domain.name}/train"),
             "test": domain.subset(test_idx, name=f"{domain.name}/test")}
    return {k: d._replace(protocol="split") if isinstance(d, ImageFileDomain) else d for k, d in parts.items()}


def check_compatible(*domains: Domain) -> None:
    """Raise DomainError unless all domains share one class tuple and, where both are in memory, one image size
    (a file-backed domain's items are resized to the run's image_size by its pipeline)."""
    if not domains:
        return
    first = domains[0]
    for other in domains[1:]:
        if other.classes != first.classes:
            raise DomainError(f"domains {first.name!r} and {other.name!r} have different classes: "
                              f"{_class_difference(first.classes, other.classes)}")
        both_in_memory = isinstance(first, DigitDomain) and isinstance(other, DigitDomain)
        if both_in_memory and other.image_size != first.image_size:
            raise DomainError(
                f"domains {first.name!r} and {other.name!r} have different image sizes: "
                f"{first.image_size} vs {other.image_size}"
            )


def _class_difference(a: tuple[str, ...], b: tuple[str, ...]) -> str:
    """Both tuples when short; else what differs (benchmarks have up to 345 classes)."""
    if len(a) + len(b) <= 24:
        return f"{a!r} vs {b!r}"
    only_a, only_b = [c for c in a if c not in set(b)], [c for c in b if c not in set(a)]
    if not only_a and not only_b:
        first = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
        return f"the same {len(a)} names in another order (first difference at label {first})"
    return f"{len(a)} vs {len(b)} classes; only in the first: {only_a[:5]}, only in the second: {only_b[:5]}"
