"""Shared input validation: every public measure calls these before doing any work."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from .errors import DivergenceInputError, FeatureDimensionError, NonFiniteFeaturesError, TooFewSamplesError


def as_features(x: Any, name: str = "x", *, min_rows: int = 2, check_finite: bool = True) -> Tensor:
    """Return ``x`` as a floating n×d tensor, raising a named error for bad shapes or values.

    Accepts tensors and array-likes: NumPy arrays, nested lists/tuples of numbers, and lists/tuples
    of rows that are themselves tensors or arrays (stacked, keeping a tensor row's device and
    autograd graph). Integer input becomes the default float dtype. Input that cannot be read as a
    numeric n×d array (ragged rows, strings) raises :class:`FeatureDimensionError` (a
    :class:`DivergenceInputError`) naming ``name``. ``check_finite=False`` skips the only check that
    reads the values (and so synchronises with an accelerator): use it inside training loops.
    """
    t = x if isinstance(x, Tensor) else _to_tensor(x, name)
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


def _to_tensor(x: Any, name: str) -> Tensor:
    """``torch.as_tensor`` for array-likes, plus sequences of tensor/array rows, with named errors."""
    try:
        if isinstance(x, (list, tuple)) and any(isinstance(r, (Tensor, np.ndarray)) for r in x):
            # torch.as_tensor fails on a list of tensors ("only one element tensors can be converted") and is
            # slow on a list of arrays: stack the rows instead (as_tensor keeps a tensor row as it is)
            rows = [torch.as_tensor(r) for r in x]
            if len({tuple(r.shape) for r in rows}) > 1:
                shapes = sorted({tuple(r.shape) for r in rows})
                raise FeatureDimensionError(f"{name}: the rows have different shapes {shapes}; all rows need the same length")
            return torch.stack(rows)
        return torch.as_tensor(x)
    except DivergenceInputError:
        raise
    except (TypeError, ValueError, RuntimeError) as err:
        raise FeatureDimensionError(
            f"{name} could not be read as an n×d numeric array of features ({type(x).__name__}: {err})"
        ) from None


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
