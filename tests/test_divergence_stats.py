"""Streaming feature statistics (domainadapt.divergence.stats): batches, merges, DDP ranks."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch

from gloo import run_worker_script

from domainadapt.divergence import FeatureDimensionError, FeatureStats, TooFewSamplesError

REPO = Path(__file__).resolve().parents[1]


def one_shot(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.double()
    return x.mean(0), torch.cov(x.T, correction=1)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def data(n: int = 200, d: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # large offset: a raw-moment (Σx, Σxxᵀ) accumulation would lose digits here, Chan's merge does not
    return (torch.randn(n, d, generator=g, dtype=torch.float64) * torch.linspace(0.1, 3, d, dtype=torch.float64) + 1e3)


def test_seven_uneven_batches_equal_one_shot():
    x = data()
    sizes = [1, 2, 13, 50, 7, 100, 27]
    assert sum(sizes) == 200
    stats = FeatureStats()
    for b in torch.split(x, sizes):
        stats.update(b)
    mean, cov = one_shot(x)
    assert stats.n == 200
    assert rel_err(stats.mean, mean) < 1e-10
    assert rel_err(stats.covariance, cov) < 1e-10
    assert stats.mean.dtype == torch.float64 and stats.covariance.dtype == torch.float64


def test_merge_equals_one_shot_and_leaves_other_unchanged():
    x = data(seed=1)
    a = FeatureStats().update(x[:37]).update(x[37:90])
    b = FeatureStats().update(x[90:])
    b_mean = b.mean.clone()
    merged = a.merge(b).merge(FeatureStats())  # merging empty stats is a no-op
    mean, cov = one_shot(x)
    assert merged is a and a.n == 200
    assert rel_err(a.covariance, cov) < 1e-10 and rel_err(a.mean, mean) < 1e-10
    assert torch.equal(b.mean, b_mean) and b.n == 110


def test_float32_batches_are_accumulated_in_float64():
    x = data(seed=2)
    stats = FeatureStats()
    for b in torch.split(x.float(), 23):
        stats.update(b)
    mean, cov = one_shot(x.float())
    assert rel_err(stats.covariance, cov) < 1e-10


def test_errors():
    s = FeatureStats()
    with pytest.raises(TooFewSamplesError):
        s.mean
    s.update(torch.randn(1, 4))
    with pytest.raises(TooFewSamplesError, match="at least 2"):
        s.covariance
    with pytest.raises(FeatureDimensionError, match="4"):
        s.update(torch.randn(3, 5))
    with pytest.raises(FeatureDimensionError):
        s.merge(FeatureStats().update(torch.randn(3, 6)))


def test_all_reduce_without_distributed_is_a_no_op():
    x = data(seed=3)
    s = FeatureStats().update(x)
    before = s.covariance.clone()
    assert s.all_reduce() is s
    assert torch.equal(s.covariance, before)


_WORKER = textwrap.dedent(
    """
    import sys, torch, torch.distributed as dist, torch.multiprocessing as mp
    from domainadapt.divergence import FeatureStats

    def run(rank, port, out):
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
        g = torch.Generator().manual_seed(0)
        x = torch.randn(301, 12, generator=g, dtype=torch.float64) * 2 + 7
        rows = x[:150] if rank == 0 else x[150:]          # uneven halves
        s = FeatureStats()
        for b in torch.split(rows, 41):
            s.update(b)
        s.all_reduce()
        torch.save({"n": s.n, "mean": s.mean, "cov": s.covariance, "x": x}, f"{out}/rank{rank}.pt")
        dist.destroy_process_group()

    if __name__ == "__main__":
        mp.spawn(run, args=(int(sys.argv[1]), sys.argv[2]), nprocs=2, join=True)
    """
)


def test_all_reduce_over_two_gloo_processes_equals_one_shot(tmp_path):
    proc = run_worker_script(_WORKER, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    mean, cov = one_shot(r0["x"])
    for r in (r0, r1):
        assert r["n"] == 301
        assert rel_err(r["mean"], mean) < 1e-10
        assert rel_err(r["cov"], cov) < 1e-10
    assert torch.equal(r0["cov"], r1["cov"])  # every rank ends with the same numbers
