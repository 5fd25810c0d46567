"""One call that measures the gap between two feature sets with every divergence, each with its
uncertainty; the backend of ``domainadapt measure`` and of the experiment scripts. Output is plain
JSON-serialisable dicts (floats, ints, lists, strings).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor

from ._checks import as_feature_pair
from .frechet import frechet_distance_from_features
from .kernels import KernelSpec
from .kid import kid
from .mmd import mmd_test
from .proxy_a import proxy_a_distance

METRICS = ("mmd", "fd", "kid", "a_distance")
_ALIASES = {"mmd": "mmd", "fd": "fd", "frechet": "fd", "kid": "kid", "a_distance": "a_distance", "pad": "a_distance", "proxy_a_distance": "a_distance"}


def _fd_bootstrap_std(x: Tensor, y: Tensor, n_boot: int, seed: int) -> float | None:
    """Std of FD over ``n_boot`` bootstrap resamples (rows of each set drawn with replacement)."""
    if n_boot < 2:
        return None
    g = torch.Generator(device="cpu")
    g.manual_seed(int(seed))
    vals = []
    for _ in range(n_boot):
        ix = torch.randint(0, x.shape[0], (x.shape[0],), generator=g).to(x.device)
        iy = torch.randint(0, y.shape[0], (y.shape[0],), generator=g).to(y.device)
        vals.append(frechet_distance_from_features(x[ix], y[iy]))
    return float(torch.tensor(vals, dtype=torch.float64).std())


def measure(
    x: Tensor,
    y: Tensor,
    metrics: Sequence[str] = METRICS,
    seed: int = 0,
    n_permutations: int = 1000,
    *,
    mmd_kernel: KernelSpec = "gaussian",
    mmd_estimator: str = "unbiased",
    fd_bootstrap: int = 20,
    kid_subsets: int = 100,
    kid_subset_size: int | None = None,
    pad_test_fraction: float = 0.5,
) -> dict[str, dict[str, Any]]:
    """Divergences between feature sets x (n₁×d) and y (n₂×d), each with its uncertainty.

    Returns ``{metric: {...}}``, every entry with ``"value"`` plus:

    * ``"mmd"``: MMD² (``mmd_estimator``, ``mmd_kernel``), ``p_value`` of the permutation test
      (``n_permutations``), ``sigma`` (bandwidths);
    * ``"fd"``: Fréchet distance of fitted Gaussians, ``std`` over ``fd_bootstrap`` bootstrap
      resamples (``None`` when < 2), ``n_x``/``n_y`` (FD is biased in n: compare at equal n);
    * ``"kid"``: mean, ``std`` over ``kid_subsets`` subsets of ``subset_size``
      (default min(1000, ⌊min(n₁, n₂)/2⌋));
    * ``"a_distance"``: proxy A-distance, ``interval`` (95% Wilson), held-out ``error``, chosen ``C``.

    Metric names also accept ``"frechet"``, ``"pad"``, ``"proxy_a_distance"``. All randomness is seeded.
    """
    wanted = []
    for name in metrics:
        key = _ALIASES.get(name)
        if key is None:
            raise ValueError(f"unknown metric {name!r}; choose from {list(METRICS)} (aliases: {sorted(set(_ALIASES) - set(METRICS))})")
        if key not in wanted:
            wanted.append(key)
    x, y = as_feature_pair(x, y)
    n_x, n_y = int(x.shape[0]), int(y.shape[0])
    out: dict[str, dict[str, Any]] = {}
    for key in wanted:
        if key == "mmd":
            r = mmd_test(x, y, kernel=mmd_kernel, estimator=mmd_estimator, n_permutations=n_permutations, seed=seed)
            out[key] = {
                "value": r.statistic, "p_value": r.p_value, "n_permutations": r.n_permutations,
                "estimator": r.estimator, "test": r.method, "route": r.route,
                "sigma": list(r.sigma) if r.sigma is not None else None, "n_x": n_x, "n_y": n_y,
            }
        elif key == "fd":
            x64, y64 = x.to(torch.float64), y.to(torch.float64)
            out[key] = {
                "value": frechet_distance_from_features(x64, y64),
                "std": _fd_bootstrap_std(x64, y64, fd_bootstrap, seed),
                "n_bootstrap": fd_bootstrap, "n_x": n_x, "n_y": n_y,
            }
        elif key == "kid":
            # 1,000 as the references use, but never the whole set: subsets of all n rows would all be equal and
            # their std would say nothing (halves when n <= 2,000)
            size = kid_subset_size if kid_subset_size is not None else max(2, min(1000, min(n_x, n_y) // 2))
            r = kid(x, y, n_subsets=kid_subsets, subset_size=size, seed=seed)
            out[key] = {"value": r.mean, "std": r.std, "n_subsets": r.n_subsets, "subset_size": r.subset_size}
        else:
            r = proxy_a_distance(x, y, seed=seed, test_fraction=pad_test_fraction)
            out[key] = {
                "value": r.distance, "interval": list(r.interval), "error": r.error, "raw_error": r.raw_error,
                "error_interval": list(r.error_interval), "C": r.C, "n_train": r.n_train, "n_test": r.n_test,
                "confidence": r.confidence,
            }
    return out
