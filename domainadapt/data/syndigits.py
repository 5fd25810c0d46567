"""Synthetic digits rendered offline with the TrueType fonts that matplotlib ships.

In the spirit of SynNumbers (Ganin et al. 2016, JMLR 17(59), sec. 5.2.2: digits rendered from fonts,
"varying the text (that includes different one-, two-, and three-digit numbers), positioning,
orientation, background and stroke colors, and the amount of blur"), a synthetic source for SVHN.
Each image centres its label digit, optionally flanked by neighbour digits cut by the border as in SVHN.
Rendering happens at twice the target size and is downsampled with antialiasing.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .cache import load_or_build
from .domain import DigitDomain, DomainError, resize_to_uint8
from .registry import register_domain

DIGIT_GLYPH_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
MIN_CONTRAST = 64.0  # minimum |luma(fg) - luma(bg)| on 0..255 (Rec. 601 luma), so every digit stays legible


def _matplotlib_font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@lru_cache(maxsize=1)
def digit_fonts() -> tuple[Path, ...]:
    """matplotlib's TTF fonts that truly draw the ten digits.

    A font qualifies when its cmap sends '0'..'9' to glyphs named zero..nine (old-style figures count)
    and the ten rendered glyphs are non-empty and pairwise different. This drops symbol fonts (cmsy10,
    cmex10, STIXSize*), fonts without digits (DejaVu*Display, STIXNonUni*) and LastResort, whose
    placeholder glyph is the same for every digit.
    """
    from fontTools.ttLib import TTFont
    from PIL import Image, ImageDraw, ImageFont

    fonts = []
    for path in sorted(_matplotlib_font_dir().glob("*.ttf")):
        try:
            cmap = TTFont(str(path), lazy=True).getBestCmap() or {}
            font = ImageFont.truetype(str(path), 40)
        except Exception:  # noqa: BLE001 - an unreadable font is simply not used
            continue
        names = [cmap.get(ord(str(d)), "") for d in range(10)]
        if not all(n.startswith(DIGIT_GLYPH_NAMES[d]) for d, n in enumerate(names)):
            continue
        renders = set()
        for d in range(10):
            img = Image.new("L", (64, 64), 0)
            ImageDraw.Draw(img).text((8, 0), str(d), font=font, fill=255)
            if img.getbbox() is not None:
                renders.add(img.tobytes())
        if len(renders) == 10:
            fonts.append(path)
    if not fonts:
        raise DomainError(f"syndigits: no font with digit glyphs found in {_matplotlib_font_dir()}")
    return tuple(fonts)


@lru_cache(maxsize=None)
def _digit_height_per_px(path: Path) -> float:
    """Mean digit ink height per pixel of font size, to size every font to the same digit height."""
    from PIL import ImageFont

    font = ImageFont.truetype(str(path), 100)
    heights = [font.getbbox(str(d))[3] - font.getbbox(str(d))[1] for d in range(10)]
    return max(float(np.mean(heights)), 1.0) / 100.0


@lru_cache(maxsize=4096)
def _font(path: Path, size: int):  # noqa: ANN202 - PIL FreeTypeFont
    from PIL import ImageFont

    return ImageFont.truetype(str(path), size)


def _luma(rgb: np.ndarray) -> float:
    return float(0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2])


def _render_mask(
    canvas: int, font_path: Path, digit_height: float, text: tuple[str, str, str],
    dx: float, dy: float, angle: float, blur: float,
) -> np.ndarray:
    """uint8 canvas×canvas ink mask: text[1] centred at (canvas/2 + dx, canvas/2 + dy) between text[0] and text[2]."""
    from PIL import Image, ImageDraw, ImageFilter

    size = max(4, round(digit_height / _digit_height_per_px(font_path)))
    font = _font(font_path, size)
    left, digit, right = text
    x0, y0, x1, y1 = font.getbbox(digit)
    cx, cy = canvas / 2 + dx, canvas / 2 + dy
    origin = (cx - font.getlength(left) - (x0 + x1) / 2, cy - (y0 + y1) / 2)
    mask = Image.new("L", (canvas, canvas), 0)
    ImageDraw.Draw(mask).text(origin, left + digit + right, font=font, fill=255)
    mask = mask.rotate(angle, resample=Image.Resampling.BILINEAR, center=(cx, cy))
    if blur > 0:
        mask = mask.filter(ImageFilter.GaussianBlur(blur))
    return np.asarray(mask, dtype=np.uint8)


def build_syndigits(image_size: int = 32, n: int = 6000, seed: int = 0) -> DigitDomain:
    """Render n digits (label i % 10, so every prefix is balanced) with numpy PCG64(seed).

    Per image: random font; digit height 45-80 % of the frame; centre jitter ±8 %; rotation ±15°;
    with probability 1/2 per side a neighbour digit; Gaussian blur up to 1.2 px (at 32 px output);
    background colour with a gentle linear gradient; stroke colour at least MIN_CONTRAST luma away;
    Gaussian pixel noise with std up to 6 grey levels.
    """
    if n < 10 or n % 10:
        raise DomainError(f"syndigits: n must be a positive multiple of 10 (balanced classes), got {n}")
    fonts = digit_fonts()
    canvas = 2 * image_size
    scale = image_size / 32.0
    rng = np.random.Generator(np.random.PCG64(seed))
    labels = np.arange(n, dtype=np.int64) % 10
    masks = np.empty((n, canvas, canvas), dtype=np.uint8)
    fg = np.empty((n, 3), dtype=np.float32)
    bg = np.empty((n, 3), dtype=np.float32)
    for i in range(n):
        font_path = fonts[rng.integers(len(fonts))]
        digit_height = rng.uniform(0.45, 0.8) * canvas
        dx, dy = rng.uniform(-0.08, 0.08, size=2) * canvas
        angle = rng.uniform(-15.0, 15.0)
        blur = rng.uniform(0.0, 1.2) * 2 * scale
        flank = rng.random(2) < 0.5
        neighbours = rng.integers(0, 10, size=2)
        text = (
            str(neighbours[0]) if flank[0] else "",
            str(labels[i]),
            str(neighbours[1]) if flank[1] else "",
        )
        masks[i] = _render_mask(canvas, font_path, digit_height, text, dx, dy, angle, blur)
        bg[i] = rng.uniform(0, 255, size=3)
        while True:  # rejection sampling keeps the colour distribution simple and the stroke legible
            candidate = rng.uniform(0, 255, size=3)
            if abs(_luma(candidate) - _luma(bg[i])) >= MIN_CONTRAST:
                fg[i] = candidate
                break
    alpha = resize_to_uint8(torch.from_numpy(masks).unsqueeze(1), image_size).float().div_(255.0)  # N×1×S×S
    fg_t, bg_t = torch.from_numpy(fg)[:, :, None, None], torch.from_numpy(bg)[:, :, None, None]
    theta = torch.from_numpy(rng.uniform(0, 2 * math.pi, size=n).astype(np.float32))
    tilt = torch.from_numpy(rng.uniform(-30, 30, size=(n, 3)).astype(np.float32))[:, :, None, None]
    coords = (torch.arange(image_size, dtype=torch.float32) + 0.5) / image_size - 0.5
    # background gradient: a linear ramp along a random direction, |ramp| <= 0.71 (tilt up to ±30 levels)
    ramp = torch.cos(theta)[:, None, None] * coords[None, None, :]
    ramp = ramp + torch.sin(theta)[:, None, None] * coords[None, :, None]
    background = (bg_t + tilt * ramp[:, None]).clamp(0, 255)
    images = background + (fg_t - background) * alpha
    noise_std = torch.from_numpy(rng.uniform(0, 6, size=n).astype(np.float32))[:, None, None, None]
    generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
    images += noise_std * torch.randn(images.shape, generator=generator)
    images = images.round_().clamp_(0, 255).to(torch.uint8).contiguous()
    return DigitDomain("syndigits", images, torch.from_numpy(labels))


@register_domain("syndigits", description="digits in matplotlib fonts, random pose/colour/blur (SynNumbers-like)")
def build_syndigits_cached(
    *, root: Path | None, image_size: int, download: bool, cache_dir: Path | None, seed: int
) -> DigitDomain:
    import PIL

    # Glyph rasterisation depends on Pillow/FreeType, so their version is part of the cache key.
    params = {
        "image_size": image_size, "n": 6000, "seed": seed,
        "fonts": [p.name for p in digit_fonts()], "pillow": PIL.__version__,
    }
    return load_or_build("syndigits", params, lambda: build_syndigits(image_size, 6000, seed), cache_dir)
