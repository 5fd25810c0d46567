"""FID (Heusel et al. 2017, NeurIPS, eq. 6) with the Inception network of pytorch-fid.

FID depends on the extractor, the resizing and n far more than on the linear algebra, so this module
reproduces the reference pipeline (pytorch-fid, Seitzer 2020, which ports the TF FID graph):

* network: torchvision's InceptionV3 layout, modified as the TF FID graph is: 1008-class fc; in the
  Mixed_5*/6b-e/7b blocks (FIDInceptionA/C/E_1) the pooling branch averages with
  ``count_include_pad=False``; in Mixed_7c (FIDInceptionE_2) that branch max-pools instead. Parameter
  names match the released state dict, so it loads with ``strict=True``;
* input: images in [0, 1], resized bilinearly to 299×299 (``align_corners=False``, no antialias),
  then scaled to [−1, 1];
* features: the 2048-d global average pool after Mixed_7c;
* FID = :func:`~domainadapt.divergence.frechet.frechet_distance` of the two sets' mean/covariance
  (float64, streamed with :class:`~domainadapt.divergence.stats.FeatureStats`).

FID is biased in n: compare only at equal n (``FIDResult`` carries both n). The weights are the TF
port released by pytorch-fid (not torchvision's ImageNet weights, which give different numbers).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import inception_v3
from torchvision.models.inception import InceptionA, InceptionC, InceptionE

from ..inference import run_loop
from .errors import FeatureDimensionError, WeightsNotFoundError
from .frechet import frechet_distance, frechet_distance_from_features
from .stats import FeatureStats

FID_WEIGHTS_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth"
)
FID_WEIGHTS_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_ENV = "DOMAINADAPT_FID_WEIGHTS"


def _avg_pool_valid(x: Tensor) -> Tensor:
    # TF's average pool divides by the number of in-image cells, i.e. count_include_pad=False
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class FIDInceptionA(InceptionA):
    """InceptionA whose pooling branch averages without the zero padding (TF semantics)."""

    def forward(self, x: Tensor) -> Tensor:
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_avg_pool_valid(x))
        return torch.cat([b1, b5, b3, bp], 1)


class FIDInceptionC(InceptionC):
    """InceptionC whose pooling branch averages without the zero padding (TF semantics)."""

    def forward(self, x: Tensor) -> Tensor:
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        b7d = x
        for conv in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            b7d = conv(b7d)
        bp = self.branch_pool(_avg_pool_valid(x))
        return torch.cat([b1, b7, b7d, bp], 1)


class _FIDInceptionEBase(InceptionE):
    def _pool(self, x: Tensor) -> Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        b1 = self.branch1x1(x)
        t = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(t), self.branch3x3_2b(t)], 1)
        u = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        b3d = torch.cat([self.branch3x3dbl_3a(u), self.branch3x3dbl_3b(u)], 1)
        bp = self.branch_pool(self._pool(x))
        return torch.cat([b1, b3, b3d, bp], 1)


class FIDInceptionE_1(_FIDInceptionEBase):
    """InceptionE (Mixed_7b) with an average pool that excludes the padding (TF semantics)."""

    def _pool(self, x: Tensor) -> Tensor:
        return _avg_pool_valid(x)


class FIDInceptionE_2(_FIDInceptionEBase):
    """InceptionE (Mixed_7c) whose pooling branch max-pools, as in the TF FID graph."""

    def _pool(self, x: Tensor) -> Tensor:
        return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)


_STEM = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3")
_MIXED = ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c")


class FIDInceptionV3(nn.Module):
    """The FID InceptionV3: ``forward(images in [0,1], N×3×H×W) -> N×2048`` pool features.

    Built from ``torchvision.models.inception_v3(weights=None, aux_logits=False,
    init_weights=False, num_classes=1008)`` with the FID blocks swapped in; weights are random until
    loaded (see :func:`load_fid_inception`). ``fc`` (2048→1008) is kept so the released state dict
    loads strictly; it is not used for features.
    """

    def __init__(self, resize_input: bool = True, normalize_input: bool = True) -> None:
        super().__init__()
        tv = inception_v3(weights=None, aux_logits=False, init_weights=False, num_classes=1008)
        tv.Mixed_5b = FIDInceptionA(192, pool_features=32)
        tv.Mixed_5c = FIDInceptionA(256, pool_features=64)
        tv.Mixed_5d = FIDInceptionA(288, pool_features=64)
        tv.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
        tv.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
        tv.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
        tv.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
        tv.Mixed_7b = FIDInceptionE_1(1280)
        tv.Mixed_7c = FIDInceptionE_2(2048)
        for name in _STEM + _MIXED + ("fc",):
            setattr(self, name, getattr(tv, name))
        self.resize_input = resize_input
        self.normalize_input = normalize_input

    def forward(self, images: Tensor) -> Tensor:
        x = images
        if self.resize_input:
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        if self.normalize_input:
            x = 2.0 * x - 1.0
        x = self.Conv2d_1a_3x3(x)
        x = self.Conv2d_2a_3x3(x)
        x = self.Conv2d_2b_3x3(x)
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_3b_1x1(x)
        x = self.Conv2d_4a_3x3(x)
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for name in _MIXED:
            x = getattr(self, name)(x)
        return F.adaptive_avg_pool2d(x, (1, 1)).flatten(1)


def _missing_weights(path: Path | None) -> WeightsNotFoundError:
    cache = Path(torch.hub.get_dir()) / "checkpoints" / FID_WEIGHTS_FILENAME
    where = f"at {path}" if path is not None else f"(no weights_path given, ${FID_WEIGHTS_ENV} unset, and not cached at {cache})"
    target = path if path is not None else cache
    return WeightsNotFoundError(
        f"FID Inception weights not found {where}. Download {FID_WEIGHTS_URL} "
        f"(e.g. `curl -L -o {target} {FID_WEIGHTS_URL}`) and pass weights_path= or set ${FID_WEIGHTS_ENV}, "
        f"or call with allow_download=True when online to fetch it into the torch hub cache."
    )


def load_fid_inception(
    weights_path: str | os.PathLike | None = None,
    *,
    allow_download: bool = False,
    device: torch.device | str = "cpu",
) -> FIDInceptionV3:
    """The FID InceptionV3 in eval mode with the TF-ported FID weights.

    Looks in order at ``weights_path``, ``$DOMAINADAPT_FID_WEIGHTS``, and the torch hub cache
    (``<hub dir>/checkpoints/pt_inception-2015-12-05-6726825d.pth``); only with
    ``allow_download=True`` does it fetch ``FID_WEIGHTS_URL`` (torch.hub). Files are read with
    ``torch.load(weights_only=True)``. A missing file raises :class:`WeightsNotFoundError` naming
    the path and how to get the file.
    """
    model = FIDInceptionV3()
    path: Path | None = None
    if weights_path is not None:
        path = Path(weights_path).expanduser()
    elif os.environ.get(FID_WEIGHTS_ENV):
        path = Path(os.environ[FID_WEIGHTS_ENV]).expanduser()
    if path is not None:
        if not path.is_file():
            raise _missing_weights(path)
        state = torch.load(path, map_location="cpu", weights_only=True)
    else:
        cached = Path(torch.hub.get_dir()) / "checkpoints" / FID_WEIGHTS_FILENAME
        if cached.is_file():
            state = torch.load(cached, map_location="cpu", weights_only=True)
        elif allow_download:
            state = torch.hub.load_state_dict_from_url(
                FID_WEIGHTS_URL, map_location="cpu", progress=True, weights_only=True
            )
        else:
            raise _missing_weights(None)
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


def _prepare_images(x: Any) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"expected a batch of image tensors; got {type(x).__name__}")
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise FeatureDimensionError(
            f"images must be N×3×H×W (or N×1×H×W, repeated to 3 channels); got shape {tuple(x.shape)}"
        )
    if x.dtype == torch.uint8:
        x = x.float() / 255.0
    elif not x.is_floating_point():
        raise ValueError(f"images must be float in [0, 1] or uint8; got dtype {x.dtype}")
    if x.numel() and (float(x.min()) < -1e-6 or float(x.max()) > 1 + 1e-6):
        raise ValueError(
            f"images must be in [0, 1] (pytorch-fid convention); got values in [{float(x.min()):.3g}, {float(x.max()):.3g}]"
        )
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return x.float()


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _resolve_model(model: FIDInceptionV3 | None, weights_path: Any, allow_download: bool, device: Any) -> tuple[FIDInceptionV3, torch.device]:
    dev = torch.device(device) if device is not None else _default_device()
    if model is None:
        model = load_fid_inception(weights_path, allow_download=allow_download, device=dev)
    else:
        model = model.to(dev).eval()
    return model, dev


def inception_features(
    images: Any,
    model: FIDInceptionV3 | None = None,
    *,
    batch_size: int = 50,
    device: torch.device | str | None = None,
    weights_path: str | os.PathLike | None = None,
    allow_download: bool = False,
) -> Tensor:
    """2048-d FID Inception pool features (float32, CPU, n×2048) of images in [0, 1].

    ``images``: an N×C×H×W tensor (C = 3, or 1 repeated to 3; float in [0, 1] or uint8), or an
    iterable/DataLoader of such batches or of (images, labels) tuples.
    """
    model, dev = _resolve_model(model, weights_path, allow_download, device)
    stats, features = run_loop(model, images, _InceptionPass(stats=False, keep_rows=None), device=dev,
                               batch_size=batch_size)
    return features.float()


def inception_stats(
    images: Any,
    model: FIDInceptionV3 | None = None,
    *,
    batch_size: int = 50,
    device: torch.device | str | None = None,
    weights_path: str | os.PathLike | None = None,
    allow_download: bool = False,
) -> FeatureStats:
    """Streaming float64 mean/covariance of the FID features (does not keep the features)."""
    model, dev = _resolve_model(model, weights_path, allow_download, device)
    return run_loop(model, images, _InceptionPass(stats=True, keep_rows=0), device=dev, batch_size=batch_size)[0]


@dataclass
class FIDResult:
    """FID ``value`` with the sample sizes it was computed at (FID is biased in n)."""

    value: float
    n1: int
    n2: int


_KEEP_ROWS = 2048  # up to this many rows per set, features are also kept for the exact n < d route


class _InceptionPass:
    """The measure of `inception_features` / `inception_stats` / FID for `run_loop`: pool features of each batch
    into streaming statistics (`stats`) and/or kept as float64 rows (`keep_rows`: None keeps all, 0 none, k
    keeps them while there are at most k, for the exact n < d route)."""

    def __init__(self, *, stats: bool, keep_rows: int | None) -> None:
        self.stats = FeatureStats() if stats else None
        self.keep_rows = keep_rows
        self.kept: list[Tensor] | None = [] if keep_rows != 0 else None
        self.n_kept = 0

    def forward(self, model: nn.Module, x: Any, y: Any) -> Tensor:
        return model(_prepare_images(x))

    def accumulate(self, f: Tensor, y: Any, index: Tensor | None) -> None:
        if self.stats is not None:
            self.stats.update(f)
        if self.kept is not None:
            self.kept.append(f.double().cpu())
            self.n_kept += f.shape[0]
            if self.keep_rows is not None and self.n_kept > self.keep_rows:
                self.kept = None

    def compute(self, dist: Any, device: torch.device) -> tuple[FeatureStats | None, Tensor | None]:
        empty = self.stats.n == 0 if self.stats is not None else not self.kept
        if empty:
            raise ValueError("images yielded no batches")
        return self.stats, (torch.cat(self.kept) if self.kept else None)


def _stats_and_features(images: Any, model: FIDInceptionV3, batch_size: int, dev: torch.device) -> tuple[FeatureStats, Tensor | None]:
    return run_loop(model, images, _InceptionPass(stats=True, keep_rows=_KEEP_ROWS), device=dev, batch_size=batch_size)


def fid(
    images1: Any,
    images2: Any,
    *,
    model: FIDInceptionV3 | None = None,
    weights_path: str | os.PathLike | None = None,
    allow_download: bool = False,
    batch_size: int = 50,
    device: torch.device | str | None = None,
) -> FIDResult:
    """Fréchet Inception Distance between two image sets (tensors in [0, 1] or loaders).

    Uses ``model`` if given, else :func:`load_fid_inception` (``weights_path`` / env / cache; downloads
    only with ``allow_download=True``). Features are streamed into float64 stats, then
    :func:`~domainadapt.divergence.frechet.frechet_distance`; for small sets (n₁·n₂ ≤ 2048²) the
    same value is computed by the faster nuclear-norm route on the features.
    """
    model, dev = _resolve_model(model, weights_path, allow_download, device)
    s1, f1 = _stats_and_features(images1, model, batch_size, dev)
    s2, f2 = _stats_and_features(images2, model, batch_size, dev)
    if f1 is not None and f2 is not None and s1.n >= 2 and s2.n >= 2 and s1.n * s2.n <= 2048 * 2048:
        value = frechet_distance_from_features(f1, f2, method="svd")
    else:
        value = frechet_distance(s1.mean, s1.covariance, s2.mean, s2.covariance)
    return FIDResult(value=value, n1=s1.n, n2=s2.n)
