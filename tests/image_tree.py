"""Tiny JPEG trees and image lists for the file-backed domain tests, written by the tests into tmp_path.

Images vary in size (30×40 and 50×36, so every pipeline must resize) and carry a class cue (a bright block whose
position depends on the class) over seeded noise, so a model can learn a little in a few steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

SIZES = ((30, 40), (50, 36))  # (width, height)


def write_jpeg(path: Path, label: int, seed: int, size: tuple[int, int] = SIZES[0]) -> Path:
    from PIL import Image

    w, h = size
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 80, (h, w, 3), dtype=np.uint8)
    r, c = divmod(label % 16, 4)
    pixels[r * h // 4 : (r + 1) * h // 4, c * w // 4 : (c + 1) * w // 4] += 150
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="JPEG", quality=90)
    return path


def write_image_folder(root: Path, classes: Sequence[str], per_class: int = 2, seed: int = 0) -> list[tuple[str, int]]:
    """root/<class>/<k>.jpg for every class; returns the (path relative to root, label) pairs, in folder order."""
    entries = []
    for label, name in enumerate(classes):
        for k in range(per_class):
            rel = f"{name}/{k:03d}.jpg"
            write_jpeg(root / rel, label, seed=seed * 100_003 + label * 101 + k, size=SIZES[(label + k) % 2])
            entries.append((rel, label))
    return entries


def write_list(path: Path, entries: Sequence[tuple[str, int]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{rel} {label}\n" for rel, label in entries))
    return path


def write_office31(root: Path, per_class: int = 2, domains: Sequence[str] = ("amazon", "dslr", "webcam")) -> Path:
    """An Office-31-shaped tree: root/office31/<domain>/images/<class>/<image> for the 31 classes; returns root."""
    from domainadapt.data.benchmarks import OFFICE31

    for i, domain in enumerate(domains):
        write_image_folder(root / "office31" / domain / "images", OFFICE31.classes, per_class, seed=i + 1)
    return root


def corrupt(path: Path) -> Path:
    """Overwrite an image with bytes no decoder reads (the file still exists, so a list check passes)."""
    path.write_bytes(b"not a jpeg at all" * 4)
    return path
