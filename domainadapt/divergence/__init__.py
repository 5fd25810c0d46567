"""Domain divergences on feature sets (n×d tensors): MMD² and its permutation test, Fréchet
distance / FID, KID, proxy A-distance, streaming feature statistics. Tensors in; floats or result dataclasses out (``mmd2`` returns a differentiable tensor
so it can serve as a training loss).

scikit-learn is imported only inside :func:`proxy_a_distance`; torchvision only when a FID name
(``fid``, ``FIDInceptionV3``, ``load_fid_inception``, ...) is first used.
"""

from __future__ import annotations

from typing import Any

from .errors import (
    DivergenceInputError,
    FeatureDimensionError,
    NonFiniteFeaturesError,
    SubsetSizeError,
    TooFewSamplesError,
    WeightsNotFoundError,
)
from .frechet import frechet_distance, frechet_distance_from_features, trace_sqrt_product
from .kernels import GaussianKernel, LinearKernel, resolve_kernel
from .kid import KIDResult, kid
from .measure import METRICS, measure
from .mmd import MMDTestResult, mmd2, mmd_test, permutation_chunks
from .proxy_a import ProxyADistanceResult, proxy_a_distance
from .stats import FeatureStats
# per-layer features of a model: domainadapt.inference.extract_features (the one evaluation loop)

_FID_NAMES = {
    "fid", "FIDResult", "FIDInceptionV3", "load_fid_inception", "inception_features", "inception_stats",
    "FID_WEIGHTS_URL", "FIDInceptionA", "FIDInceptionC", "FIDInceptionE_1", "FIDInceptionE_2",
}


def __getattr__(name: str) -> Any:  # PEP 562: keep torchvision out of import time
    if name in _FID_NAMES:
        import importlib

        return getattr(importlib.import_module(".fid_inception", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    # errors
    "DivergenceInputError", "FeatureDimensionError", "NonFiniteFeaturesError", "SubsetSizeError",
    "TooFewSamplesError", "WeightsNotFoundError",
    # MMD
    "GaussianKernel", "LinearKernel", "resolve_kernel", "mmd2", "mmd_test", "MMDTestResult", "permutation_chunks",
    # Fréchet distance, streaming stats
    "frechet_distance", "frechet_distance_from_features", "trace_sqrt_product", "FeatureStats",
    # KID, proxy A-distance, all-in-one
    "kid", "KIDResult", "proxy_a_distance", "ProxyADistanceResult", "measure", "METRICS",
    # FID (lazy: torchvision is imported on first use)
    "fid", "FIDResult", "FIDInceptionV3", "load_fid_inception", "inception_features", "inception_stats",
    "FID_WEIGHTS_URL", "FIDInceptionA", "FIDInceptionC", "FIDInceptionE_1", "FIDInceptionE_2",
]
