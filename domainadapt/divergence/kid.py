"""Kernel Inception Distance (Bińkowski et al. 2018, "Demystifying MMD GANs", ICLR, §4 / App. A).

KID = the unbiased MMD² (Gretton et al. 2012, eq. 3) with the cubic polynomial kernel
k(a, b) = (aᵀb / d + 1)³, averaged over random subsets of equal size drawn without replacement from
each set; reported as mean ± std over subsets. Unlike FID it is unbiased in n, so it can be slightly
negative for two samples of one distribution. Defaults (100 subsets of 1,000) follow the reference
implementations (torch-fidelity), whose std is the population std over subsets (ddof = 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ._checks import as_feature_pair, check_positive_int
from .errors import SubsetSizeError


@dataclass
class KIDResult:
    """``mean`` ± ``std`` (std over subsets, ddof = 0) of the per-subset unbiased MMD² values."""

    mean: float
    std: float
    n_subsets: int
    subset_size: int
    values: tuple[float, ...]


def polynomial_mmd2_unbiased(x: Tensor, y: Tensor, degree: int = 3, coef0: float = 1.0) -> Tensor:
    """Unbiased MMD² with k(a, b) = (aᵀb/d + coef0)^degree for equal-size x, y (m ≥ 2 rows each)."""
    m, d = x.shape
    kxx = (x @ x.T / d + coef0) ** degree
    kyy = (y @ y.T / d + coef0) ** degree
    kxy = (x @ y.T / d + coef0) ** degree
    return _unbiased_from_kernels(kxx, kyy, kxy)


def _unbiased_from_kernels(kxx: Tensor, kyy: Tensor, kxy: Tensor) -> Tensor:
    m = kxx.shape[0]
    off = (kxx.sum() - kxx.diagonal().sum()) + (kyy.sum() - kyy.diagonal().sum())
    return off / (m * (m - 1)) - 2.0 * kxy.sum() / (m * m)


# Kernel matrices of the whole sets are computed once (then gathered per subset) while they fit in this many
# float64 entries (512 MiB); larger sets compute each subset's kernels on their own.
_PRECOMPUTE_MAX_ENTRIES = 64 * 2**20


def kid(
    x: Tensor,
    y: Tensor,
    n_subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
    *,
    degree: int = 3,
    coef0: float = 1.0,
    dtype: torch.dtype = torch.float64,
) -> KIDResult:
    """KID between feature sets x (n₁×d) and y (n₂×d); see the module docstring.

    ``subset_size`` larger than either set is an error (no silent clamping: it would change the
    estimator's variance without telling). Subsets come from a CPU ``torch.Generator`` seeded with
    ``seed``, so results are the same on every device. Computed in ``dtype`` (float64 by default).
    """
    check_positive_int(n_subsets, "n_subsets")
    check_positive_int(subset_size, "subset_size")
    x, y = as_feature_pair(x, y, dtype=dtype)
    if subset_size < 2:
        raise SubsetSizeError("subset_size must be at least 2 for the unbiased estimator")
    if subset_size > min(x.shape[0], y.shape[0]):
        raise SubsetSizeError(
            f"subset_size={subset_size} exceeds the number of rows (x has {x.shape[0]}, y has {y.shape[0]}); "
            f"pass subset_size <= {min(x.shape[0], y.shape[0])}"
        )
    g = torch.Generator(device="cpu")
    g.manual_seed(int(seed))
    n1, n2, d = x.shape[0], y.shape[0], x.shape[1]
    full = None
    if n1 * n1 + n2 * n2 + n1 * n2 <= _PRECOMPUTE_MAX_ENTRIES and n_subsets * subset_size**2 > n1 * n2:
        full = tuple((a @ b.T / d + coef0) ** degree for a, b in ((x, x), (y, y), (x, y)))
    vals = []
    for _ in range(n_subsets):
        ix = torch.randperm(n1, generator=g)[:subset_size].to(x.device)
        iy = torch.randperm(n2, generator=g)[:subset_size].to(y.device)
        if full is None:
            vals.append(polynomial_mmd2_unbiased(x[ix], y[iy], degree, coef0))
        else:
            kxx, kyy, kxy = full
            vals.append(_unbiased_from_kernels(kxx[ix][:, ix], kyy[iy][:, iy], kxy[ix][:, iy]))
    v = torch.stack(vals).cpu()
    return KIDResult(
        mean=float(v.mean()),
        std=float(v.std(correction=0)),
        n_subsets=n_subsets,
        subset_size=subset_size,
        values=tuple(float(t) for t in v),
    )
