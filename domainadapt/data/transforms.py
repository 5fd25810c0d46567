"""Named image pipelines (torchvision.transforms.v2) for the file-backed domains: PIL image -> float tensor.

Every pipeline outputs a float32 3×S×S tensor with values in [0, 1] and does NOT normalise: the backbones
ImageNet-normalise inside (models/resnet.py), so the digits path (uint8 / 255) and this one feed the same inputs.

The recipe is the standard one of the image-classification DA benchmarks (TLlib,
examples/domain_adaptation/image_classification/utils.py, `get_train_transform` / `get_val_transform`, as in
CDAN, Long et al. 2018): resize to a 256×256 square, then a random resized crop of 224 (+ horizontal flip) for
training, a centre crop of 224 for evaluation. Here the crop side is the config's `image_size` and the square
resize scales with it (round(256 · image_size / 224); 256 at 224), so small test images take the same path.

The only randomness is torch's global generator (RandomResizedCrop, RandomHorizontalFlip draw from it); an
ImageFileDomain runs a pipeline under a forked generator seeded per item, so augmentation is a pure function of
(item, draw seed) and a resumed run sees the same crops.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .domain import DomainError

TRANSFORMS: tuple[str, ...] = ("da_train", "da_eval", "resize", "none")
RANDOM_TRANSFORMS: frozenset[str] = frozenset({"da_train"})  # those that draw from torch's generator

Transform = Callable[[object], torch.Tensor]


def resize_side(image_size: int) -> int:
    """The square side images are resized to before a crop of `image_size` (TLlib: 256 for 224)."""
    return max(image_size, round(256 * image_size / 224))


def check_transform_name(name: str, where: str = "transform") -> None:
    """A one-line DomainError naming the unknown pipeline and the choices."""
    if name not in TRANSFORMS:
        raise DomainError(f"unknown {where} {name!r}; choose one of {', '.join(TRANSFORMS)}")


def build_transform(name: str, image_size: int) -> Transform:
    """The pipeline `name` producing image_size×image_size float images in [0, 1] (not normalised).

    da_train  square resize to resize_side(s), RandomResizedCrop(s) (scale 0.08..1, ratio 3/4..4/3), random flip
    da_eval   square resize to resize_side(s), CenterCrop(s)
    resize    square resize to s×s, no randomness (aspect ratio not kept, as the digits path does)
    none      no resizing: only for images that are all one size already
    """
    check_transform_name(name)
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size <= 0:
        raise DomainError(f"image_size must be a positive int, got {image_size!r}")
    from torchvision.transforms import v2  # imported on first use: torchvision takes seconds to import

    s, side = image_size, resize_side(image_size)
    steps: list[object]
    if name == "da_train":
        steps = [v2.Resize((side, side), antialias=True), v2.RandomResizedCrop(s, antialias=True),
                 v2.RandomHorizontalFlip()]
    elif name == "da_eval":
        steps = [v2.Resize((side, side), antialias=True), v2.CenterCrop(s)]
    elif name == "resize":
        steps = [v2.Resize((s, s), antialias=True)]
    else:
        steps = []
    # geometry on the PIL image (PIL's resampling), then uint8 tensor -> float32 in [0, 1]; a plain tensor out
    steps += [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.ToPureTensor()]
    return v2.Compose(steps)
