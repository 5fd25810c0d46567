"""Shared input validation: every public measure calls these before doing any work."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .errors import FeatureDimensionError, NonFiniteFeaturesError, TooFewSamplesError


def as_features(x: Any, name: str = "x", *, min_rows: int = 2, check_finite: bool = True) -> Tensor:
    """Return ``x`` as a floating n×d tensor, raising a named error for bad shapes or values.

    Accepts tensors and anything ``torch.as_tensor`` accepts (NumPy arrays, nested lists).
    Integer input becomes the default float dtype. ``check_finite=False`` skips the only check that
    reads the values (and so synchronises with an accelerator): use it inside training loops.
    """
    t = x if isinstance(x, Tensor) else torch.as_tensor(x)
    if not t.is_floating_point():
        t = t.to(torch.get_default_dtype())
    if t.ndim != 2:
        raise FeatureDimensionError(
            f"{name} must be a 2-D tensor of features (n rows × d columns); got shape {tuple(t.shape)}"
        )
    if t.shape[0] < min_rows:
        raise TooFewSamplesError(
            f"{name} has {t.shape[0]} row(s); at least {min_rows} are needed"
        )
    if t.shape[1] < 1:
        raise FeatureDimensionError(f"{name} has 0 feature columns")
    if check_finite and not bool(torch.isfinite(t).all()):
        n_bad = int((~torch.isfinite(t)).any(dim=1).sum())
        raise NonFiniteFeaturesError(f"{name} contains NaN or Inf values (in {n_bad} of {t.shape[0]} rows)")
    return t


def as_feature_pair(
    x: Any, y: Any, *, min_rows: int = 2, check_finite: bool = True, dtype: torch.dtype | None = None
) -> tuple[Tensor, Tensor]:
    """Validate two feature sets; return them with a common dtype on ``x``'s device.

    ``dtype`` forces a dtype (e.g. float64 for accuracy); otherwise the promoted type of the two.
    """
    x = as_features(x, "x", min_rows=min_rows, check_finite=check_finite)
    y = as_features(y, "y", min_rows=min_rows, check_finite=check_finite)
    if x.shape[1] != y.shape[1]:
        raise FeatureDimensionError(
            f"x and y have different feature dimensions: x is {tuple(x.shape)}, y is {tuple(y.shape)}"
        )
    common = dtype if dtype is not None else torch.promote_types(x.dtype, y.dtype)
    return x.to(dtype=common), y.to(device=x.device, dtype=common)


def check_positive_int(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")
    return value
