"""KID (domainadapt.divergence.kid) and proxy A-distance (domainadapt.divergence.proxy_a)."""

from __future__ import annotations

import pytest
import torch

from domainadapt.divergence import SubsetSizeError, TooFewSamplesError, kid, proxy_a_distance
from domainadapt.divergence.proxy_a import wilson_interval

F64 = torch.float64


def naive_poly_mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> float:
    m, d = x.shape
    k = lambda a, b: (float(a @ b) / d + 1) ** 3  # noqa: E731
    sxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    syy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    sxy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    return sxx / (m * (m - 1)) + syy / (m * (m - 1)) - 2 * sxy / (m * m)


def test_kid_full_subset_equals_naive_unbiased_polynomial_mmd():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(15, 4, generator=g, dtype=F64), torch.randn(15, 4, generator=g, dtype=F64) + 0.7
    r = kid(x, y, n_subsets=3, subset_size=15, seed=1)  # every subset is the whole set
    ref = naive_poly_mmd2_unbiased(x, y)
    assert r.mean == pytest.approx(ref, rel=1e-10)
    assert r.std == pytest.approx(0.0, abs=1e-12)
    assert len(r.values) == 3 and r.subset_size == 15


def test_kid_same_distribution_is_near_zero_and_separable_is_large():
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(400, 16, generator=g), torch.randn(400, 16, generator=g)
    same = kid(x, y, n_subsets=50, subset_size=100, seed=0)
    assert abs(same.mean) < 3 * same.std
    assert min(same.values) < 0 < max(same.values)  # unbiased: straddles 0
    far = kid(x, y + 3.0, n_subsets=50, subset_size=100, seed=0)
    assert far.mean > 20 * far.std and far.mean > 100 * abs(same.mean)


def test_kid_is_seeded():
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(50, 3, generator=g), torch.randn(60, 3, generator=g)
    assert kid(x, y, n_subsets=5, subset_size=20, seed=4).values == kid(x, y, n_subsets=5, subset_size=20, seed=4).values
    assert kid(x, y, n_subsets=5, subset_size=20, seed=4).values != kid(x, y, n_subsets=5, subset_size=20, seed=5).values


def test_kid_subset_larger_than_set_is_an_error():
    x, y = torch.randn(50, 3), torch.randn(40, 3)
    with pytest.raises(SubsetSizeError, match="subset_size=41 exceeds"):
        kid(x, y, subset_size=41)
    with pytest.raises(SubsetSizeError):
        kid(x, y)  # default 1000 > 40
    assert issubclass(SubsetSizeError, ValueError)


def test_wilson_interval_reference_value():
    lo, hi = wilson_interval(10, 100, 0.95)  # p = 0.1, n = 100: (0.0552, 0.1744)
    assert lo == pytest.approx(0.05523, abs=1e-4) and hi == pytest.approx(0.17437, abs=1e-4)


def test_proxy_a_distance_same_distribution_is_small():
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(300, 5, generator=g), torch.randn(400, 5, generator=g)
    r = proxy_a_distance(x, y, seed=0)
    assert 0.0 <= r.distance <= 0.3
    assert r.interval[0] <= r.distance <= r.interval[1]
    assert r.n_train + r.n_test == 600  # the larger set was subsampled to 300
    assert r.error <= 0.5 and r.distance == pytest.approx(2 * (1 - 2 * r.error))


def test_proxy_a_distance_separable_is_near_two():
    g = torch.Generator().manual_seed(6)
    x, y = torch.randn(200, 5, generator=g), torch.randn(200, 5, generator=g) + 3.0
    r = proxy_a_distance(x, y, seed=0)
    assert r.distance >= 1.9
    assert r.interval[1] <= 2.0 and r.interval[0] < r.distance


def test_proxy_a_distance_is_seeded_and_clips_error():
    g = torch.Generator().manual_seed(7)
    x, y = torch.randn(60, 3, generator=g), torch.randn(60, 3, generator=g)
    a, b = proxy_a_distance(x, y, seed=3), proxy_a_distance(x, y, seed=3)
    assert a == b
    # over several seeds of indistinguishable domains, the raw error exceeds 0.5 at least once; d_A stays >= 0
    results = [proxy_a_distance(x, y, seed=s) for s in range(8)]
    assert any(r.raw_error > 0.5 for r in results)
    assert all(r.distance >= 0.0 and r.error <= 0.5 for r in results)


def test_proxy_a_distance_bad_inputs():
    with pytest.raises(TooFewSamplesError):
        proxy_a_distance(torch.randn(1, 3), torch.randn(10, 3))
    with pytest.raises(ValueError, match="different feature dimensions"):
        proxy_a_distance(torch.randn(10, 3), torch.randn(10, 2))
    with pytest.raises(ValueError, match="too few rows"):
        proxy_a_distance(torch.randn(3, 3), torch.randn(3, 3))


@pytest.mark.parametrize("shape", [(60, 50, 5, 30, 20), (300, 257, 40, 12, 100)])
def test_kid_routes_equal_the_one_subset_at_a_time_reference(shape):
    """The quadratic-form and batched routes equal the previous implementation (the loop) on the same subsets."""
    n1, n2, d, n_subsets, size = shape
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(n1, d, generator=g), torch.randn(n2, d, generator=g) * 1.1 + 0.3
    ref = kid(x, y, n_subsets=n_subsets, subset_size=size, seed=1, route="loop")
    for route in ("quadratic", "batched", "auto"):
        res = kid(x, y, n_subsets=n_subsets, subset_size=size, seed=1, route=route, block_size=37)
        assert max(abs(a - b) for a, b in zip(res.values, ref.values)) < 1e-12, route
    fast32 = kid(x, y, n_subsets=n_subsets, subset_size=size, seed=1, dtype=torch.float32)
    assert max(abs(a - b) for a, b in zip(fast32.values, ref.values)) < 1e-5 * max(abs(v) for v in ref.values) + 1e-7


def test_kid_auto_route_follows_the_cost_model():
    from domainadapt.divergence.kid import kid_route_cost

    cost = kid_route_cost(5000, 5000, 2048, 100, 1000)
    assert cost["quadratic"] < cost["batched"] / 5  # the benchmark's shape: one pass over the kernels wins
    cost = kid_route_cost(50_000, 50_000, 2048, 100, 1000)
    assert cost["batched"] < cost["quadratic"]  # large sets: 100 subsets touch a small part of the kernel
    with pytest.raises(ValueError, match="unknown KID route"):
        kid(torch.randn(10, 2), torch.randn(10, 2), 2, 5, route="fast")
