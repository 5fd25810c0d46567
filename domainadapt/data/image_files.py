"""A lazy, file-backed image domain: paths + labels in memory, each image decoded when its item is read.

The in-memory DigitDomain holds every image as uint8; at Office-31 / VisDA / DomainNet sizes that does not fit,
so this domain keeps only paths and labels and decodes per item (PIL, converted to RGB), then runs a named
transforms.v2 pipeline (transforms.py): memory O(batch), decoding in DataLoader workers (config num_workers).

Exact resume with random augmentation: an item may be read as `domain[(index, draw_seed)]`; its pipeline then
runs under `torch.random.fork_rng(devices=[])` seeded with `draw_seed`, so the crop and flip are a pure function
of (index, draw_seed) — the same in the training process or any worker, and the caller's generator is left
untouched. InfiniteBatchStream (streams.py) sees `seeded_items = True` and sends such pairs, with draw seeds
derived from (stream seed, epoch, position), so a stream restored from its state_dict gives bitwise the same
augmented batches. A plain `domain[i]` uses a draw seed derived from i.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch.utils.data import Dataset

from .domain import DomainError, check_name_and_classes
from .transforms import RANDOM_TRANSFORMS, Transform, build_transform, check_transform_name

PROTOCOLS = ("split", "whole", "official")  # how a domain's train/test parts were made (load_splits)


def mix64(*values: int) -> int:
    """A small integer hash (splitmix64 finaliser over the values in turn) -> a seed in [0, 2**63)."""
    x = 0x9E3779B97F4A7C15
    for v in values:
        x = (x ^ (int(v) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 31
        x = x * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 29
    return x & 0x7FFFFFFFFFFFFFFF


@dataclass(eq=False, repr=False)
class ImageFileDomain(Dataset):
    """N image files with int64 labels in [0, len(classes)); items are (float 3×S×S in [0, 1], int label).

    `transform` names the pipeline (transforms.TRANSFORMS) and `image_size` its output side S; `protocol` says
    how this part of a domain was made ('split': a seeded stratified split, 'whole': the whole domain serves as
    train and test, as Office-31 / Office-Home papers do, 'official': the dataset's own train/test lists).
    `class_balanced` asks InfiniteBatchStream to draw each epoch with probability ∝ 1 / class count
    (`sample_weights`), a seeded, resumable order. `spans` (N×2 int64: byte offset, byte size), when given, says
    the image of item i is those bytes of file `paths[i]` (a WebDataset tar shard, shards.py), not the whole file.
    """

    name: str
    paths: Sequence[str]
    labels: torch.Tensor
    classes: tuple[str, ...]
    transform: str = "resize"
    image_size: int = 224
    protocol: str = "split"
    class_balanced: bool = False
    spans: torch.Tensor | None = None
    _pipeline: Any = field(default=None, init=False, repr=False)

    seeded_items: ClassVar[bool] = True  # InfiniteBatchStream sends (index, draw_seed) pairs

    def __post_init__(self) -> None:
        self.classes = check_name_and_classes(self.name, self.classes)
        where = f"domain {self.name!r}"
        self.paths = tuple(str(p) for p in self.paths)
        labels = torch.as_tensor(self.labels)
        if labels.ndim != 1 or labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
            raise DomainError(f"{where}: labels must be a 1-D integer tensor, "
                              f"found {tuple(labels.shape)} {labels.dtype}")
        if not self.paths:
            raise DomainError(f"{where} is empty")
        if labels.shape[0] != len(self.paths):
            raise DomainError(f"{where}: {len(self.paths)} image paths but {labels.shape[0]} labels")
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= len(self.classes):
            raise DomainError(f"{where}: labels must lie in [0, {len(self.classes)}) for {len(self.classes)} classes, "
                              f"found range [{lo}, {hi}]")
        self.labels = labels.to(torch.int64).contiguous()
        if self.spans is not None:
            spans = torch.as_tensor(self.spans)
            if spans.shape != (len(self.paths), 2) or spans.dtype != torch.int64 or bool((spans < 0).any()):
                raise DomainError(f"{where}: spans must be a {len(self.paths)}×2 int64 tensor of non-negative "
                                  f"(offset, size), found {tuple(spans.shape)} {spans.dtype}")
            self.spans = spans.contiguous()
        check_transform_name(self.transform, f"transform of {where}")
        if isinstance(self.image_size, bool) or not isinstance(self.image_size, int) or self.image_size <= 0:
            raise DomainError(f"{where}: image_size must be a positive int, got {self.image_size!r}")
        if self.protocol not in PROTOCOLS:
            raise DomainError(f"{where}: protocol must be one of {', '.join(PROTOCOLS)}, got {self.protocol!r}")

    def __repr__(self) -> str:
        return (f"ImageFileDomain(name={self.name!r}, n={len(self)}, transform={self.transform!r}, "
                f"image_size={self.image_size}, num_classes={self.num_classes}, protocol={self.protocol!r})")

    def __len__(self) -> int:
        return len(self.paths)

    def __getstate__(self) -> dict[str, Any]:  # workers rebuild the pipeline instead of unpickling it
        return {**self.__dict__, "_pipeline": None}

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def sample_weights(self) -> torch.Tensor | None:
        """Per-item draw weights for a class-balanced stream (1 / count of its class), or None."""
        if not self.class_balanced:
            return None
        return 1.0 / self.class_counts().double()[self.labels]

    def class_counts(self) -> torch.Tensor:
        """int64 tensor of length num_classes: images per class."""
        return torch.bincount(self.labels, minlength=self.num_classes)

    def _replace(self, **changes: Any) -> ImageFileDomain:
        return dataclasses.replace(self, **changes)

    def subset(self, index: torch.Tensor | Sequence[int], name: str | None = None) -> ImageFileDomain:
        """A new domain of the items `index` (int positions or a bool mask); `name` defaults to '<name>/subset'."""
        index = torch.as_tensor(index)
        index = index.nonzero().squeeze(1) if index.dtype == torch.bool else index.to(torch.int64)
        try:
            labels = self.labels[index]
            paths = [self.paths[i] for i in index.tolist()]
        except IndexError as exc:
            raise DomainError(f"domain {self.name!r}: bad subset index for {len(self)} items: {exc}") from None
        spans = None if self.spans is None else self.spans[index]
        return self._replace(name=name or f"{self.name}/subset", paths=paths, labels=labels, spans=spans)

    def with_transform(self, transform: str, image_size: int | None = None) -> ImageFileDomain:
        """The same files through another pipeline (train split: da_train, test splits: da_eval)."""
        return self._replace(transform=transform, image_size=self.image_size if image_size is None else image_size)

    def with_labels(self, labels: torch.Tensor, name: str) -> ImageFileDomain:
        return self._replace(labels=labels, name=name)

    def balanced(self, on: bool = True) -> ImageFileDomain:
        return self._replace(class_balanced=on)

    def _transform(self) -> Transform:
        if self._pipeline is None:
            self._pipeline = build_transform(self.transform, self.image_size)
        return self._pipeline

    def _decode(self, i: int) -> Any:
        from PIL import Image, UnidentifiedImageError

        path = self.paths[i]
        where = path
        try:
            if self.spans is None:
                source: Any = path
            else:
                offset, size = (int(v) for v in self.spans[i])
                where = f"{path} (bytes {offset}..{offset + size})"
                with open(path, "rb") as f:
                    f.seek(offset)
                    source = io.BytesIO(f.read(size))
            with Image.open(source) as img:
                return img.convert("RGB")
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            raise DomainError(f"cannot read image {where} (item {i} of domain {self.name!r}): "
                              f"{type(exc).__name__}: {exc}") from None

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        if isinstance(key, (tuple, list)):
            i, draw_seed = int(key[0]), int(key[1])
        else:
            i = int(key)
            draw_seed = mix64(i)
        if not -len(self) <= i < len(self):
            raise IndexError(f"domain {self.name!r}: index {i} out of range for {len(self)} items")
        i %= len(self)
        image = self._decode(i)
        pipeline = self._transform()
        if self.transform in RANDOM_TRANSFORMS:
            with torch.random.fork_rng(devices=[]):
                torch.default_generator.manual_seed(draw_seed)  # CPU only: torch.manual_seed also queues CUDA seeds
                x = pipeline(image)
        else:
            x = pipeline(image)
        if x.shape[0] != 3:
            raise DomainError(f"domain {self.name!r}: transform {self.transform!r} gave shape {tuple(x.shape)} "
                              f"for {self.paths[i]}, expected 3×H×W")
        return x, int(self.labels[i])
