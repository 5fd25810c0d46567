"""Digit benchmarks read through torchvision (MNIST, USPS, SVHN), train and test splits concatenated.

These need the dataset files under `root` (or `download=True` and internet); without them the error
names the root, the files expected, and the download switch. Splitting is left to `load_splits`,
so every domain is split the same seeded, stratified way.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from .cache import resolve_cache_dir
from .domain import DigitDomain, DomainError, grey_to_rgb, resize_to_uint8
from .registry import register_domain

MNIST_FILES = tuple(
    f"MNIST/raw/{f}"
    for f in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
)
USPS_FILES = ("usps.bz2", "usps.t.bz2")
SVHN_FILES = ("train_32x32.mat", "test_32x32.mat")
T = TypeVar("T")


def resolve_root(name: str, root: Path | None, download: bool, cache_dir: Path | None, files: tuple[str, ...]) -> Path:
    """The folder to read `files` from; DomainError when they are missing and download is off.

    With download=True and no root, files go to <cache_dir>/torchvision.
    """
    if root is None:
        if not download:
            raise DomainError(
                f"domain {name!r} needs its dataset files: pass root=DIR holding {', '.join(files)}, "
                f"or download=True to fetch them (needs internet)"
            )
        root = resolve_cache_dir(cache_dir) / "torchvision"
    root = Path(root)
    missing = [f for f in files if not (root / f).is_file()]
    if missing and not download:
        raise DomainError(
            f"domain {name!r}: root {root} lacks {', '.join(missing)}; "
            f"pass download=True to fetch them (needs internet)"
        )
    if download:
        root.mkdir(parents=True, exist_ok=True)
    return root


def _open(name: str, root: Path, make: Callable[[], T]) -> T:
    """Run a torchvision dataset constructor; any failure becomes a DomainError naming the root."""
    try:
        return make()
    except Exception as exc:  # noqa: BLE001 - failed download, md5 mismatch, any malformed file
        raise DomainError(f"domain {name!r}: could not read its files under {root}: {exc}") from None


def _to_domain(name: str, images: torch.Tensor, labels: torch.Tensor, image_size: int) -> DigitDomain:
    if images.ndim == 3:  # grey N×H×W: resize one channel, then replicate
        images = grey_to_rgb(resize_to_uint8(images.unsqueeze(1), image_size))
    else:
        images = resize_to_uint8(images, image_size)
    return DigitDomain(name, images.contiguous(), labels.to(torch.int64))


def load_torchvision_mnist(
    root: Path | None, image_size: int, download: bool, cache_dir: Path | None, name: str = "mnist"
) -> DigitDomain:
    """The full MNIST (LeCun et al. 1998): 60,000 train + 10,000 test digits, 28×28 grey."""
    from torchvision.datasets import MNIST

    root = resolve_root(name, root, download, cache_dir, MNIST_FILES)
    parts = [_open(name, root, lambda t=t: MNIST(str(root), train=t, download=download)) for t in (True, False)]
    images = torch.cat([p.data for p in parts])
    labels = torch.cat([torch.as_tensor(p.targets) for p in parts])
    return _to_domain(name, images, labels, image_size)


@register_domain("usps", description="USPS (Hull 1994): 9,298 16x16 grey digits via torchvision, train+test")
def build_usps(*, root: Path | None, image_size: int, download: bool, cache_dir: Path | None, seed: int) -> DigitDomain:
    from torchvision.datasets import USPS

    root = resolve_root("usps", root, download, cache_dir, USPS_FILES)
    parts = [_open("usps", root, lambda t=t: USPS(str(root), train=t, download=download)) for t in (True, False)]
    images = torch.from_numpy(np.concatenate([p.data for p in parts]))
    labels = torch.tensor([int(t) for p in parts for t in p.targets], dtype=torch.int64)
    return _to_domain("usps", images, labels, image_size)


@register_domain("svhn", description="SVHN (Netzer et al. 2011): 99,289 32x32 colour house numbers, train+test")
def build_svhn(*, root: Path | None, image_size: int, download: bool, cache_dir: Path | None, seed: int) -> DigitDomain:
    """torchvision maps SVHN's label 10 (digit 0) to 0 and returns N×3×H×W; both are relied on here."""
    from torchvision.datasets import SVHN

    root = resolve_root("svhn", root, download, cache_dir, SVHN_FILES)
    parts = [_open("svhn", root, lambda s=s: SVHN(str(root), split=s, download=download)) for s in ("train", "test")]
    images = torch.from_numpy(np.ascontiguousarray(np.concatenate([p.data for p in parts])))
    labels = torch.from_numpy(np.concatenate([np.asarray(p.labels, dtype=np.int64).reshape(-1) for p in parts]))
    return _to_domain("svhn", images, labels, image_size)
