"""Divergence benchmarks: each row is measured against its baseline in the same run.

1. Fréchet distance at d = 2048: ours (float64, Cholesky + eigvalsh) vs the sqrtm formula
   (``scipy.linalg.sqrtm(Σ1 Σ2)``, as pytorch-fid computes it); also checks the two agree.
2. MMD permutation test, 1,000 permutations at n = 2,000 per set: ours (one pooled kernel matrix,
   permutations as batched quadratic forms) vs recomputing MMD² (kernel included) per permutation.
   The baseline is timed on a subset of the permutations and extrapolated linearly (it is a loop of
   identical calls); its statistics are checked against ours on that subset.

    python benchmarks/divergence.py [--quick] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from typing import Any

import torch

from domainadapt.divergence import GaussianKernel, frechet_distance, mmd2, mmd_test, permutation_chunks


def _timed(fn, repeats: int = 1) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def bench_frechet(d: int, seed: int = 0) -> dict[str, Any]:
    import numpy as np
    import scipy.linalg

    g = torch.Generator().manual_seed(seed)
    n = 2 * d
    a = torch.randn(n, d, generator=g, dtype=torch.float64)
    b = torch.randn(n, d, generator=g, dtype=torch.float64) * 1.2 + 0.1
    s1, s2 = a.T @ a / n, b.T @ b / n
    mu1, mu2 = a.mean(0), b.mean(0)

    def ours() -> float:
        return frechet_distance(mu1, s1, mu2, s2)

    s1n, s2n, diff = s1.numpy(), s2.numpy(), (mu1 - mu2).numpy()

    def baseline() -> float:
        covmean = np.real(scipy.linalg.sqrtm(s1n @ s2n))
        return float(diff @ diff + np.trace(s1n) + np.trace(s2n) - 2 * np.trace(covmean))

    ours()  # warm-up (library loading)
    t_ours, v_ours = _timed(ours, repeats=3)
    t_base, v_base = _timed(baseline, repeats=1)
    return {
        "name": f"Frechet distance d={d}",
        "ours_s": t_ours,
        "baseline_s": t_base,
        "speedup": t_base / t_ours,
        "baseline": "scipy.linalg.sqrtm(S1 S2) formula",
        "ours_value": v_ours,
        "baseline_value": v_base,
        "rel_diff": abs(v_ours - v_base) / abs(v_base),
    }


def bench_permutation(n: int, d: int, n_perm: int, n_baseline: int, seed: int = 0) -> dict[str, Any]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = torch.randn(n, d, generator=g) + 0.05
    mmd_test(x[:50], y[:50], n_permutations=10)  # warm-up
    t_ours, res = _timed(lambda: mmd_test(x, y, n_permutations=n_perm, seed=seed))
    kernel = GaussianKernel(sigma=res.sigma[0])  # same bandwidth; the baseline does not even redo the median
    z = torch.cat([x, y])
    perms = torch.cat(list(permutation_chunks(2 * n, n_perm, seed)))[:n_baseline]

    def baseline() -> list[float]:
        return [float(mmd2(z[p[:n]], z[p[n:]], kernel=kernel)) for p in perms]

    t_sub, base_vals = _timed(baseline)
    agree = float((torch.tensor(base_vals, dtype=torch.float64) - res.null_statistics[:n_baseline]).abs().max())
    t_base = t_sub * n_perm / n_baseline
    return {
        "name": f"MMD permutation test n={n}/set d={d} B={n_perm}",
        "ours_s": t_ours,
        "baseline_s": t_base,
        "speedup": t_base / t_ours,
        "baseline": f"mmd2 recomputed per permutation (float32); {n_baseline} timed, x{n_perm / n_baseline:g} extrapolated",
        "p_value": res.p_value,
        "max_abs_diff_vs_baseline": agree,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (d=512, n=500, B=200), for a smoke run")
    parser.add_argument("--out", help="also write the results as JSON to this path")
    args = parser.parse_args()

    if args.quick:
        rows = [bench_frechet(512), bench_permutation(500, 64, 200, 10)]
    else:
        rows = [bench_frechet(2048), bench_permutation(2000, 64, 1000, 20)]

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    print(f"{'benchmark':<48} {'ours (s)':>9} {'baseline (s)':>13} {'speed-up':>9}  baseline / check")
    for r in rows:
        check = f"rel diff {r['rel_diff']:.1e}" if "rel_diff" in r else f"max |diff| {r['max_abs_diff_vs_baseline']:.1e}"
        print(f"{r['name']:<48} {r['ours_s']:>9.3f} {r['baseline_s']:>13.3f} {r['speedup']:>8.1f}x  {r['baseline']}; {check}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"torch": torch.__version__, "threads": torch.get_num_threads(), "quick": args.quick, "rows": rows}, f, indent=2)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
