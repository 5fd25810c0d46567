"""Tiny offline domains for trainer tests: 10 classes of 16×16 images, written by the test itself."""

from __future__ import annotations

from pathlib import Path

import torch

from domainadapt.data.domain import DigitDomain


def toy_domain(n: int = 320, image_size: int = 16, seed: int = 0, invert: bool = False, name: str = "toy",
               classes: tuple[str, ...] = tuple("0123456789"), contrast: float = 180.0) -> DigitDomain:
    """Class k = a bright 4×4 block (`contrast` grey levels over noise in [0, 60)) at one of 10 positions;
    `invert` makes a shifted domain (and one a discriminator separates at once)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % len(classes)
    images = torch.randint(0, 60, (n, 3, image_size, image_size), generator=g).float()
    for i, k in enumerate(labels.tolist()):
        r, c = divmod(k, 4)
        images[i, :, 1 + 4 * r : 5 + 4 * r, 4 * c : 4 * c + 4] += contrast
    if invert:
        images = 255 - images
    return DigitDomain(name, images.clamp(0, 255).to(torch.uint8), labels, classes)


def write_toy_pair(folder: Path, n: int = 320, contrast: float = 180.0) -> tuple[str, str]:
    """Write source and (inverted) target toy domains; return their 'file:' domain names."""
    src, tgt = folder / "toy_source.pt", folder / "toy_target.pt"
    toy_domain(n, seed=0, name="toy_source", contrast=contrast).save(src)
    toy_domain(n, seed=1, invert=True, name="toy_target", contrast=contrast).save(tgt)
    return f"file:{src}", f"file:{tgt}"
