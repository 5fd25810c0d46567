"""The MMD permutation test at scale: the blockwise route against the dense one, its bounded memory, the
B-test and the subsampled test (domainadapt.divergence.mmd, domainadapt.divergence.quadratic)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from domainadapt.divergence import GaussianKernel, mmd2, mmd_test
from domainadapt.divergence import mmd as mmd_module
from domainadapt.peak_memory import reset_peak

F64 = torch.float64


@pytest.mark.parametrize("kernel", ["gaussian", "dan", "linear", GaussianKernel(sigma=0.7)])
@pytest.mark.parametrize("estimator", ["unbiased", "biased"])
def test_blockwise_equals_dense_statistics_and_p_value(kernel, estimator):
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(130, 4, generator=g, dtype=F64), torch.randn(97, 4, generator=g, dtype=F64) + 0.15
    dense = mmd_test(x, y, kernel, estimator, n_permutations=300, seed=5, route="dense")
    assert dense.route == "dense"
    for block in (16, 100, 4096):  # many blocks, ragged edges, one block
        blk = mmd_test(x, y, kernel, estimator, n_permutations=300, seed=5, route="blockwise", block_size=block)
        assert blk.route == "blockwise"
        assert abs(blk.statistic - dense.statistic) < 1e-10
        assert float((blk.null_statistics - dense.null_statistics).abs().max()) < 1e-10
        assert blk.p_value == dense.p_value
    assert 0.01 < dense.p_value < 0.99  # a case where the p-value is not trivially pinned
    assert dense.statistic == pytest.approx(float(mmd2(x, y, kernel, estimator)), abs=1e-10)


def test_blockwise_permutations_in_groups_equal_one_pass(monkeypatch):
    """When the indicators do not fit the budget, groups of permutations each recompute the kernel: same result."""
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(80, 3, generator=g, dtype=F64), torch.randn(70, 3, generator=g, dtype=F64) + 0.2
    one = mmd_test(x, y, n_permutations=600, seed=3, block_size=32)
    monkeypatch.setattr(mmd_module, "INDICATOR_MAX_BYTES", 150 * 8 * 7)  # 7 columns per kernel pass
    grouped = mmd_test(x, y, n_permutations=600, seed=3, block_size=32)
    assert float((one.null_statistics - grouped.null_statistics).abs().max()) < 1e-12
    assert one.p_value == grouped.p_value and one.statistic == pytest.approx(grouped.statistic, abs=1e-14)


_PEAK_SCRIPT = r"""
import json, sys, torch
torch.set_num_threads(1)
from domainadapt.divergence import mmd_test
from domainadapt.peak_memory import peak_bytes, reset_peak, status_bytes
n, block, perms = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
g = torch.Generator().manual_seed(0)
x, y = torch.randn(n, 8, generator=g, dtype=torch.float64), torch.randn(n, 8, generator=g, dtype=torch.float64)
mmd_test(x[:64], y[:64], n_permutations=5, route="blockwise", block_size=16)   # load every code path
mmd_test(x[:64], y[:64], n_permutations=5, route="dense")

def growth(route, **options):
    assert reset_peak()  # the high-water mark restarts from the current resident size
    before = status_bytes("VmRSS")
    result = mmd_test(x, y, n_permutations=perms, route=route, **options)
    return peak_bytes() - before, result

blockwise, b = growth("blockwise", block_size=block)
dense, d = growth("dense")
print(json.dumps({"blockwise": blockwise, "dense": dense, "same_p": b.p_value == d.p_value}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or not reset_peak(),
                    reason="needs Linux's /proc/self/clear_refs to reset the resident high-water mark")
def test_blockwise_peak_memory_is_bounded_where_dense_is_ten_times_larger():
    """Growth of the resident high-water mark over each route (torch's CPU allocations are invisible to
    tracemalloc), in a fresh interpreter, with the mark reset before each route, so neither route's figure depends
    on the other's or on what the interpreter touched before (the previous getrusage version measured blockwise
    against the warm-up's peak and failed once under -n 2)."""
    n, block, perms = 5000, 256, 49
    dense_matrix = (2 * n) ** 2 * 8  # 800 MB; the blockwise route needs its indicators (4 MB), a few
    # block-sized temporaries and the median heuristic's 2,048-row sample (~35 MB, independent of n)
    budget = dense_matrix // 10
    out = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, str(n), str(block), str(perms)],
                         capture_output=True, text=True, timeout=300, check=True)
    peak = json.loads(out.stdout.strip().splitlines()[-1])
    assert peak["same_p"]
    assert peak["blockwise"] < budget, f"blockwise grew the peak by {peak['blockwise'] / 2**20:.1f} MiB"
    assert peak["dense"] > dense_matrix * 0.9  # the measurement does see an allocation of the dense size


def test_btest_is_the_mean_of_per_block_unbiased_mmd2():
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(103, 3, generator=g, dtype=F64), torch.randn(90, 3, generator=g, dtype=F64) + 0.5
    res = mmd_test(x, y, kernel=GaussianKernel(sigma=1.3), estimator="btest", btest_block=10)
    by_hand = [float(mmd2(x[i : i + 10], y[i : i + 10], kernel=GaussianKernel(sigma=1.3))) for i in range(0, 90, 10)]
    mean = sum(by_hand) / len(by_hand)
    sd = math.sqrt(sum((v - mean) ** 2 for v in by_hand) / (len(by_hand) - 1))
    assert res.statistic == pytest.approx(mean, rel=1e-10)
    assert res.p_value == pytest.approx(0.5 * math.erfc(mean / (sd / 3) / math.sqrt(2)), rel=1e-9)
    assert res.method == "normal" and res.n_permutations == 0 and res.route is None


def test_btest_detects_a_shift_and_keeps_its_level():
    g = torch.Generator().manual_seed(6)
    shifted = mmd_test(torch.randn(2500, 4, generator=g), torch.randn(2500, 4, generator=g) + 0.2, estimator="btest")
    assert shifted.p_value < 1e-3
    null_p = [mmd_test(torch.randn(900, 4, generator=g), torch.randn(900, 4, generator=g), estimator="btest").p_value
              for _ in range(40)]
    assert sum(p <= 0.05 for p in null_p) <= 7  # level 5%: 2 expected of 40, 7+ has probability < 0.5%
    with pytest.raises(ValueError, match="btest_block"):
        mmd_test(torch.randn(10, 2), torch.randn(10, 2), estimator="btest", btest_block=6)


def test_max_samples_tests_a_seeded_subsample():
    g = torch.Generator().manual_seed(7)
    x, y = torch.randn(500, 3, generator=g, dtype=F64), torch.randn(300, 3, generator=g, dtype=F64) + 0.1
    full = mmd_test(x, y, n_permutations=100, seed=2)
    assert mmd_test(x, y, n_permutations=100, seed=2, max_samples=500).statistic == full.statistic  # nothing cut
    sub = mmd_test(x, y, n_permutations=100, seed=2, max_samples=200)
    assert (sub.n_x, sub.n_y) == (200, 200)
    assert sub.statistic == mmd_test(x, y, n_permutations=100, seed=2, max_samples=200).statistic
    assert sub.statistic != full.statistic
    with pytest.raises(ValueError, match="max_samples"):
        mmd_test(x, y, max_samples=1)


def test_unknown_route_is_named():
    with pytest.raises(ValueError, match="unknown route 'sparse'"):
        mmd_test(torch.randn(10, 2), torch.randn(10, 2), route="sparse")
