"""A named image domain: uint8 digit images plus labels over a fixed class tuple.

Images are stored as uint8 (4x smaller than float32) and converted to float in [0, 1] only per batch,
so a whole domain fits in memory and `get_batch` is a single gather + cast.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..io import atomic_write

DIGIT_CLASSES: tuple[str, ...] = tuple("0123456789")


class DomainError(ValueError):
    """Bad input about a domain or its data; the message names the problem."""


def check_name_and_classes(name: object, classes: object) -> tuple[str, ...]:
    """The checks every domain kind makes on its name and class tuple (one-line DomainErrors); the classes as a
    tuple."""
    if not isinstance(name, str) or not name:
        raise DomainError(f"domain name must be a non-empty string, got {name!r}")
    where = f"domain {name!r}"
    if isinstance(classes, str) or not isinstance(classes, Sequence):
        raise DomainError(f"{where}: classes must be a tuple of strings, got {classes!r}")
    classes = tuple(classes)
    if not classes or not all(isinstance(c, str) for c in classes):
        raise DomainError(f"{where}: classes must be a non-empty tuple of strings, got {classes!r}")
    if len(set(classes)) != len(classes):
        raise DomainError(f"{where}: class names repeat: {classes!r}")
    return classes


@dataclass(eq=False, repr=False)
class DigitDomain(Dataset):
    """N images (uint8, N×3×S×S, contiguous) with int64 labels in [0, len(classes))."""

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...] = DIGIT_CLASSES

    def __post_init__(self) -> None:
        self.classes = check_name_and_classes(self.name, self.classes)
        where = f"domain {self.name!r}"
        images, labels = self.images, self.labels
        if not isinstance(images, torch.Tensor) or not isinstance(labels, torch.Tensor):
            raise DomainError(
                f"{where}: images and labels must be torch tensors, "
                f"got {type(images).__name__} and {type(labels).__name__}"
            )
        if images.ndim >= 1 and images.shape[0] == 0:
            raise DomainError(f"{where} is empty")
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[2] != images.shape[3] or images.shape[2] == 0:
            raise DomainError(
                f"{where}: images must have shape N×3×S×S (square RGB), found {tuple(images.shape)}"
            )
        if images.dtype != torch.uint8:
            raise DomainError(f"{where}: images must be uint8 (values 0..255), found {images.dtype}")
        if labels.ndim != 1 or labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
            raise DomainError(
                f"{where}: labels must be a 1-D integer tensor, found shape {tuple(labels.shape)} {labels.dtype}"
            )
        if labels.shape[0] != images.shape[0]:
            raise DomainError(f"{where}: {images.shape[0]} images but {labels.shape[0]} labels")
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= len(self.classes):
            raise DomainError(
                f"{where}: labels must lie in [0, {len(self.classes)}) for {len(self.classes)} classes, "
                f"found range [{lo}, {hi}]"
            )
        self.images = images.contiguous()
        self.labels = labels.to(torch.int64).contiguous()

    def __repr__(self) -> str:
        return (
            f"DigitDomain(name={self.name!r}, n={len(self)}, image_size={self.image_size}, "
            f"num_classes={self.num_classes})"
        )

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i].float().div_(255.0), int(self.labels[i])

    def get_batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Float32 B×3×S×S in [0, 1] and int64 labels for `index` (one gather, one cast)."""
        return self.images[index].float().div_(255.0), self.labels[index]

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_counts(self) -> torch.Tensor:
        """int64 tensor of length num_classes: images per class."""
        return torch.bincount(self.labels, minlength=self.num_classes)

    def subset(self, index: torch.Tensor | Sequence[int], name: str | None = None) -> DigitDomain:
        """A new domain holding `images[index]` (copies); `name` defaults to '<name>/subset'."""
        index = torch.as_tensor(index)
        if index.dtype != torch.bool:
            index = index.to(torch.int64)
        try:
            images, labels = self.images[index], self.labels[index]
        except IndexError as exc:
            raise DomainError(f"domain {self.name!r}: bad subset index for {len(self)} items: {exc}") from None
        return DigitDomain(name or f"{self.name}/subset", images, labels, self.classes)

    def save(self, path: str | os.PathLike) -> None:
        """Write atomically (temp file in the same folder + os.replace): a crash never leaves half a file."""
        payload = {"name": self.name, "images": self.images, "labels": self.labels, "classes": list(self.classes)}
        atomic_torch_save(payload, Path(path))

    @classmethod
    def load(cls, path: str | os.PathLike) -> DigitDomain:
        """Read a file written by `save`; missing or damaged files raise DomainError naming the path."""
        path = Path(path)
        if not path.is_file():
            raise DomainError(f"no domain file at {path}")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # pickle, zip and torch errors all mean the same thing here
            raise DomainError(f"damaged domain file {path}: {type(exc).__name__}: {exc}") from None
        if not isinstance(payload, dict) or not {"name", "images", "labels", "classes"} <= payload.keys():
            raise DomainError(f"damaged domain file {path}: expected keys name, images, labels, classes")
        try:
            return cls(str(payload["name"]), payload["images"], payload["labels"], tuple(payload["classes"]))
        except DomainError as exc:
            raise DomainError(f"invalid domain file {path}: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise DomainError(f"damaged domain file {path}: {exc}") from None


def atomic_torch_save(obj: object, path: Path) -> None:
    """torch.save to a temp file in the target folder, then os.replace (atomic on POSIX and Windows)."""
    atomic_write(path, lambda f: torch.save(obj, f))


def resize_to_uint8(images: torch.Tensor, size: int, chunk: int = 4096) -> torch.Tensor:
    """Resize N×C×h×w (uint8 or float on the 0..255 scale) to N×C×size×size uint8.

    Bilinear with antialias (so downsampling does not alias), align_corners=False; computed in float32
    in chunks to bound memory, then rounded and clamped. Deterministic on CPU.
    """
    if size <= 0:
        raise DomainError(f"image_size must be positive, got {size}")
    if images.ndim != 4:
        raise DomainError(f"expected N×C×H×W images to resize, found shape {tuple(images.shape)}")
    if images.shape[-2:] == (size, size):
        return images.round().clamp_(0, 255).to(torch.uint8) if images.is_floating_point() else images.to(torch.uint8)
    out = torch.empty((images.shape[0], images.shape[1], size, size), dtype=torch.uint8)
    for start in range(0, images.shape[0], chunk):
        x = images[start : start + chunk].to(torch.float32)
        y = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[start : start + chunk] = y.round_().clamp_(0, 255).to(torch.uint8)
    return out


def grey_to_rgb(images: torch.Tensor) -> torch.Tensor:
    """N×H×W or N×1×H×W -> contiguous N×3×H×W (the same grey value in every channel)."""
    if images.ndim == 3:
        images = images.unsqueeze(1)
    if images.ndim != 4 or images.shape[1] != 1:
        raise DomainError(f"expected grey images N×H×W or N×1×H×W, found shape {tuple(images.shape)}")
    return images.expand(-1, 3, -1, -1).contiguous()
