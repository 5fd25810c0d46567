"""The all-in-one `measure` (domainadapt.divergence.measure) on two small Gaussian sets."""

from __future__ import annotations

import json

import pytest
import torch

from domainadapt.divergence import frechet_distance_from_features, measure


def gaussian_sets(shift: float, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(150, 4, generator=g), torch.randn(120, 4, generator=g) + shift


def test_measure_shifted_gaussians():
    x, y = gaussian_sets(1.0)
    out = measure(x, y, seed=0, n_permutations=199, fd_bootstrap=10, kid_subsets=20)
    assert set(out) == {"mmd", "fd", "kid", "a_distance"}
    json.dumps(out)  # plain JSON for the CLI and experiment scripts
    assert out["mmd"]["p_value"] == pytest.approx(1 / 200) and out["mmd"]["value"] > 0
    assert out["fd"]["value"] == pytest.approx(frechet_distance_from_features(x, y), rel=1e-12)
    assert 3.0 < out["fd"]["value"] < 5.0  # ‖Δμ‖² = 4 (1 in each of 4 dims) plus sampling noise
    assert out["fd"]["std"] > 0 and (out["fd"]["n_x"], out["fd"]["n_y"]) == (150, 120)
    assert out["kid"]["value"] > 3 * out["kid"]["std"] and out["kid"]["subset_size"] == 60  # half the smaller set
    lo, hi = out["a_distance"]["interval"]
    assert 0.3 < out["a_distance"]["value"] and lo <= out["a_distance"]["value"] <= hi


def test_measure_same_distribution_and_metric_selection():
    x, y = gaussian_sets(0.0, seed=1)
    out = measure(x, y, metrics=("mmd", "pad"), seed=0, n_permutations=199)
    assert set(out) == {"mmd", "a_distance"}
    assert out["mmd"]["p_value"] > 0.05
    assert out["a_distance"]["value"] < 0.5


def test_measure_unknown_metric():
    x, y = gaussian_sets(0.0)
    with pytest.raises(ValueError, match="unknown metric 'wasserstein'"):
        measure(x, y, metrics=("wasserstein",))
