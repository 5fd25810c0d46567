"""optdigits (Alpaydin & Kaynak 1998, UCI): 1,797 real 8×8 digits shipped with scikit-learn.

Values 0..16 (counts of set pixels in 4×4 blocks of 32×32 bitmaps) are scaled to 0..255 and upsampled
in float before rounding, so no precision is lost to an intermediate uint8.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .domain import DigitDomain, grey_to_rgb, resize_to_uint8
from .registry import register_domain


@register_domain("optdigits", description="optdigits: 1,797 real 8x8 digits from scikit-learn's load_digits")
def build_optdigits(
    *, root: Path | None, image_size: int, download: bool, cache_dir: Path | None, seed: int
) -> DigitDomain:
    from sklearn.datasets import load_digits

    digits = load_digits()
    grey = torch.from_numpy(digits.images).to(torch.float32).mul_(255.0 / 16.0).unsqueeze(1)
    images = grey_to_rgb(resize_to_uint8(grey, image_size))
    return DigitDomain("optdigits", images, torch.from_numpy(digits.target).to(torch.int64))
