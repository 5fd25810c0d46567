"""Fréchet distance (domainadapt.divergence.frechet) against scipy's sqrtm formula and closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from domainadapt.divergence import (
    FeatureDimensionError,
    FeatureStats,
    NonFiniteFeaturesError,
    frechet_distance,
    frechet_distance_from_features,
)

F64 = torch.float64


def random_spd(d: int, g: torch.Generator, n: int | None = None) -> torch.Tensor:
    a = torch.randn(n or 2 * d, d, generator=g, dtype=F64)
    return a.T @ a / (n or 2 * d) + 1e-3 * torch.eye(d, dtype=F64)


def scipy_fd(mu1, s1, mu2, s2) -> float:
    """The formula as pytorch-fid writes it, with scipy.linalg.sqrtm (the slow reference)."""
    import scipy.linalg

    covmean = scipy.linalg.sqrtm(s1.numpy() @ s2.numpy())
    covmean = np.real(covmean)
    diff = (mu1 - mu2).numpy()
    return float(diff @ diff + np.trace(s1.numpy()) + np.trace(s2.numpy()) - 2 * np.trace(covmean))


def _check_against_scipy(d: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    s1, s2 = random_spd(d, g), 1.5 * random_spd(d, g)
    mu1, mu2 = torch.randn(d, generator=g, dtype=F64), torch.randn(d, generator=g, dtype=F64) * 0.1
    ref = scipy_fd(mu1, s1, mu2, s2)
    for method in ("auto", "cholesky", "eigh"):
        assert frechet_distance(mu1, s1, mu2, s2, method=method) == pytest.approx(ref, rel=1e-6)


@pytest.mark.parametrize("d", [2, 17, 256])
def test_matches_scipy_sqrtm_formula(d):
    _check_against_scipy(d, seed=d)


@pytest.mark.slow
def test_matches_scipy_sqrtm_formula_d2048():
    _check_against_scipy(2048, seed=2048)


def test_diagonal_covariances_closed_form():
    g = torch.Generator().manual_seed(0)
    d = 64
    s, t = torch.rand(d, generator=g, dtype=F64) * 3, torch.rand(d, generator=g, dtype=F64) * 3
    mu1, mu2 = torch.randn(d, generator=g, dtype=F64), torch.randn(d, generator=g, dtype=F64)
    expected = float(((mu1 - mu2) ** 2).sum() + ((s.sqrt() - t.sqrt()) ** 2).sum())
    assert frechet_distance(mu1, torch.diag(s), mu2, torch.diag(t)) == pytest.approx(expected, rel=1e-10)
    assert frechet_distance(mu1, torch.diag(s), mu2, torch.diag(t), method="eigh") == pytest.approx(expected, rel=1e-10)


def test_equal_covariances_give_squared_mean_difference():
    g = torch.Generator().manual_seed(1)
    d = 128
    s = random_spd(d, g)
    mu1, mu2 = torch.randn(d, generator=g, dtype=F64), torch.randn(d, generator=g, dtype=F64)
    fd = frechet_distance(mu1, s, mu2, s)
    assert abs(fd - float(((mu1 - mu2) ** 2).sum())) < 1e-10 * float(s.trace())


def test_identical_inputs_give_zero():
    g = torch.Generator().manual_seed(2)
    s, mu = random_spd(200, g), torch.randn(200, generator=g, dtype=F64)
    assert abs(frechet_distance(mu, s, mu, s)) < 1e-10
    x = torch.randn(300, 64, generator=g, dtype=F64) * 10 + 5
    assert abs(frechet_distance_from_features(x, x)) < 1e-10


def test_fewer_rows_than_dimensions_is_finite_real_and_agrees_across_routes():
    g = torch.Generator().manual_seed(3)
    d = 300
    x = torch.randn(40, d, generator=g, dtype=F64)
    y = torch.randn(50, d, generator=g, dtype=F64) * 1.3 + 0.2
    a, b = FeatureStats.from_features(x), FeatureStats.from_features(y)
    fd_stats = frechet_distance(a.mean, a.covariance, b.mean, b.covariance)  # both covariances singular
    fd_svd = frechet_distance_from_features(x, y, method="svd")
    assert isinstance(fd_stats, float) and math.isfinite(fd_stats) and fd_stats > 0
    assert fd_stats == pytest.approx(fd_svd, rel=1e-9)
    assert frechet_distance_from_features(x, y) == fd_svd  # auto picks the SVD route for n1·n2 ≤ d²
    with pytest.raises(ValueError, match="positive definite"):
        frechet_distance(a.mean, a.covariance, b.mean, b.covariance, method="cholesky")
    for method in ("svd", "eigh"):
        assert frechet_distance(a.mean, a.covariance, b.mean, b.covariance, method=method) == pytest.approx(
            fd_svd, rel=1e-12
        )


def decaying_features(n: int, d: int, decay: float, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Features whose covariance spectrum falls as k^-decay (as real network features do), in a random basis."""
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=F64))
    s = torch.arange(1, d + 1, dtype=F64) ** (-decay / 2)
    x = (torch.randn(n, d, generator=g, dtype=F64) * s) @ q.T
    y = (torch.randn(n, d, generator=g, dtype=F64) * s * 1.1) @ q.T + 0.01
    return x, y


@pytest.mark.parametrize("n", [100, 400])  # n < d: singular covariances; n > d: positive definite, ill-conditioned
def test_every_route_within_1e12_on_an_ill_conditioned_spectrum(n):
    g = torch.Generator().manual_seed(5)
    x, y = decaying_features(n, 256, 3.0, g)
    a, b = FeatureStats.from_features(x), FeatureStats.from_features(y)
    ref = frechet_distance_from_features(x, y, method="svd")
    for method in ("auto", "svd", "eigh"):
        assert frechet_distance(a.mean, a.covariance, b.mean, b.covariance, method=method) == pytest.approx(
            ref, rel=1e-12
        ), method
    if n > 256:  # the plain eigenvalue route squares the condition number: what "auto" guards against
        chol = frechet_distance(a.mean, a.covariance, b.mean, b.covariance, method="cholesky")
        assert abs(chol - ref) / ref > 1e-9


def test_from_features_routes_agree_when_n_exceeds_d():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(500, 20, generator=g) * 2
    y = torch.randn(400, 20, generator=g) + 0.5
    assert frechet_distance_from_features(x, y, method="svd") == pytest.approx(
        frechet_distance_from_features(x, y, method="stats"), rel=1e-10
    )


def test_accepts_numpy_and_float32():
    g = torch.Generator().manual_seed(5)
    s = random_spd(8, g)
    mu = torch.randn(8, generator=g, dtype=F64)
    a = frechet_distance(mu.numpy(), s.numpy(), (mu + 1).float(), s.float())
    assert a == pytest.approx(8.0, rel=1e-5)


def test_bad_inputs():
    s = torch.eye(3, dtype=F64)
    mu = torch.zeros(3, dtype=F64)
    with pytest.raises(FeatureDimensionError, match="different dimensions"):
        frechet_distance(mu, s, torch.zeros(4), torch.eye(4))
    with pytest.raises(FeatureDimensionError, match="3×3"):
        frechet_distance(mu, torch.eye(4), mu, s)
    with pytest.raises(NonFiniteFeaturesError):
        frechet_distance(mu, s * float("nan"), mu, s)
    with pytest.raises(FeatureDimensionError, match="different feature dimensions"):
        frechet_distance_from_features(torch.randn(5, 3), torch.randn(5, 2))
    with pytest.raises(ValueError, match="unknown"):
        frechet_distance(mu, s, mu, s, method="sqrtm")
