"""Domains from disk: 'file:PATH' (a DigitDomain.save file) and 'folder:PATH' (an image folder).

The folder form follows torchvision's ImageFolder layout (PATH/<class>/<image>), so benchmarks such
as Office-31 (Saenko et al., ECCV 2010) load without code; classes are the sorted sub-folder names.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .domain import DigitDomain, DomainError, resize_to_uint8


def load_file_domain(path: str | os.PathLike, *, image_size: int) -> DigitDomain:
    """Load a saved domain; its image size must equal `image_size` (no silent resampling)."""
    domain = DigitDomain.load(Path(path).expanduser())
    if domain.image_size != image_size:
        raise DomainError(
            f"domain file {path} holds {domain.image_size}x{domain.image_size} images, "
            f"expected image_size={image_size}"
        )
    return domain


def load_folder_domain(path: str | os.PathLike, *, image_size: int) -> DigitDomain:
    """Read every image under PATH/<class>/, convert to RGB and resize to image_size × image_size.

    Non-square images are resized without keeping the aspect ratio (the digit benchmarks are square).
    """
    from PIL import Image, UnidentifiedImageError
    from torchvision.datasets import ImageFolder

    root = Path(path).expanduser()
    if not root.is_dir():
        raise DomainError(f"image folder {root} does not exist (expected {root}/<class>/<image files>)")
    try:
        folder = ImageFolder(str(root), allow_empty=False)
    except (FileNotFoundError, RuntimeError) as exc:
        raise DomainError(f"image folder {root} holds no class sub-folders with images: {exc}") from None
    images = torch.empty((len(folder.samples), 3, image_size, image_size), dtype=torch.uint8)  # filled in place:
    for k, (file, _) in enumerate(folder.samples):  # one copy of the data in memory, not a list then a torch.cat
        try:
            with Image.open(file) as img:
                array = np.asarray(img.convert("RGB"), dtype=np.uint8)
        except (OSError, UnidentifiedImageError) as exc:
            raise DomainError(f"cannot read image {file}: {exc}") from None
        chw = torch.from_numpy(array.copy()).permute(2, 0, 1).unsqueeze(0)
        images[k] = resize_to_uint8(chw, image_size)[0]
    labels = torch.tensor([label for _, label in folder.samples], dtype=torch.int64)
    return DigitDomain(root.name or str(root), images, labels, tuple(folder.classes))
