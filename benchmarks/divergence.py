"""Divergence benchmarks: each row is measured against its baselines in the same run, on identical inputs.

1. Fréchet distance at d = 2048 from statistics: ours (float64, Cholesky + eigvalsh, or the factor SVD when
   the spectrum is ill-conditioned) vs the sqrtm formula (``scipy.linalg.sqrtm(Σ1 Σ2)``) and, when
   installed, pytorch-fid, clean-fid, torch-fidelity and torchmetrics.
2. Fréchet distance from features (n = 1,000 < d = 2,048): ours (nuclear norm, an n×n SVD) vs each peer's
   own features → statistics → distance path.
3. KID, n = 5,000 per set, d = 2,048, 100 subsets of 1,000: ours (float64 and float32; quadratic forms of the
   whole sets' kernels) vs clean-fid, torch-fidelity and torchmetrics' ``poly_mmd`` loop, when installed.
4. MMD permutation test, 1,000 permutations at n = 2,000 per set: ours (blockwise quadratic forms) vs
   recomputing MMD² (kernel included) per permutation (timed on a subset, extrapolated linearly, checked).
5. Scale (``--scale``): the permutation test at n = 10k, 20k, 50k per set, d = 64, 200 permutations, each in
   a fresh process: wall time, the peak resident memory during the test (VmHWM, reset just before it
   through /proc/self/clear_refs; getrusage's whole-process peak where that is refused), the N²·(B+1)/2 multiply-adds
   the blockwise route must do and the rate it did them at, next to what the dense route would need.

    python benchmarks/divergence.py [--quick] [--scale] [--out results.json]

Peers are optional (``pip install pytorch-fid clean-fid torch-fidelity torchmetrics``); a missing one is
reported as missing, not fatal. Speed-ups are time(peer) / time(ours) measured in this run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import subprocess
import sys
import time
from typing import Any, Callable

import numpy as np
import torch

from domainadapt.divergence import (
    FeatureStats,
    GaussianKernel,
    frechet_distance,
    frechet_distance_from_features,
    kid,
    mmd2,
    mmd_test,
    permutation_chunks,
)
from domainadapt.peak_memory import peak_bytes, reset_peak, status_bytes


def _timed(fn: Callable[[], Any], repeats: int = 1) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def _have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _features(n: int, d: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    """Non-negative, correlated features with a decaying spectrum (like pooled CNN activations), float32."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.randn(256, d, generator=torch.Generator().manual_seed(1234)) / 16
    return torch.relu(torch.randn(n, 256, generator=g) @ basis + shift)


def _row(name: str, ours: dict[str, tuple[float, float]], peers: dict[str, tuple[float, float] | str]) -> dict[str, Any]:
    """ours/peers: label -> (seconds, value); a peer may be the string 'not installed'."""
    fastest_ours = min(t for t, _ in ours.values())
    ref_value = next(iter(ours.values()))[1]
    out: dict[str, Any] = {"name": name, "ours": {}, "peers": {}}
    for label, (t, v) in ours.items():
        out["ours"][label] = {"s": t, "value": v}
    for label, res in peers.items():
        if isinstance(res, str):
            out["peers"][label] = res
            continue
        t, v = res
        out["peers"][label] = {"s": t, "value": v, "speedup_of_ours": t / fastest_ours,
                               "rel_diff": abs(v - ref_value) / max(abs(ref_value), 1e-300)}
    return out


Peer = tuple[str, str, Callable[[], Callable[[], float]]]  # (label, module it needs, make -> the timed call)


def _time_peers(peers: list[Peer]) -> dict[str, Any]:
    """label -> (seconds, value) for each installed peer, 'not installed' for the others. ``make`` imports the
    peer and returns the call to time, so a missing package is never imported."""
    return {label: _timed(make()) if _have(module) else "not installed" for label, module, make in peers}


def bench_frechet_stats(d: int) -> dict[str, Any]:
    x64, y64 = _features(2 * d, d, 0).double(), _features(2 * d, d, 1, shift=0.02).double()
    a, b = FeatureStats.from_features(x64), FeatureStats.from_features(y64)
    mu1, s1, mu2, s2 = a.mean, a.covariance, b.mean, b.covariance
    n_mu1, n_s1, n_mu2, n_s2 = (t.numpy() for t in (mu1, s1, mu2, s2))
    frechet_distance(mu1, s1, mu2, s2)  # warm-up (library loading)
    ours = {"domainadapt": _timed(lambda: frechet_distance(mu1, s1, mu2, s2), repeats=3)}

    def sqrtm_formula():
        import scipy.linalg

        def call() -> float:
            covmean = np.real(scipy.linalg.sqrtm(n_s1 @ n_s2))
            diff = n_mu1 - n_mu2
            return float(diff @ diff + np.trace(n_s1) + np.trace(n_s2) - 2 * np.trace(covmean))

        return call

    def pytorch_fid():
        from pytorch_fid.fid_score import calculate_frechet_distance

        return lambda: float(calculate_frechet_distance(n_mu1, n_s1, n_mu2, n_s2))

    def clean_fid():
        from cleanfid.fid import frechet_distance as cleanfid_fd

        return lambda: float(cleanfid_fd(n_mu1, n_s1, n_mu2, n_s2))

    def torch_fidelity():
        from torch_fidelity.metric_fid import fid_statistics_to_metric

        st1, st2 = {"mu": n_mu1, "sigma": n_s1}, {"mu": n_mu2, "sigma": n_s2}
        return lambda: float(fid_statistics_to_metric(st1, st2, False)["frechet_inception_distance"])

    def torchmetrics():
        from torchmetrics.image.fid import _compute_fid

        return lambda: float(_compute_fid(mu1, s1, mu2, s2))

    peers = _time_peers([("scipy sqrtm formula", "scipy", sqrtm_formula), ("pytorch-fid 0.3", "pytorch_fid", pytorch_fid),
                         ("clean-fid", "cleanfid", clean_fid), ("torch-fidelity", "torch_fidelity", torch_fidelity),
                         ("torchmetrics", "torchmetrics", torchmetrics)])
    return _row(f"FD from statistics, d={d}", ours, peers)


def bench_frechet_features(n: int, d: int) -> dict[str, Any]:
    x, y = _features(n, d, 2), _features(n, d, 3, shift=0.02)
    frechet_distance_from_features(x[:50], y[:50])
    ours = {"domainadapt": _timed(lambda: frechet_distance_from_features(x, y), repeats=2)}
    xn, yn = x.double().numpy(), y.double().numpy()

    def pytorch_fid():
        from pytorch_fid.fid_score import calculate_frechet_distance

        return lambda: float(calculate_frechet_distance(xn.mean(0), np.cov(xn, rowvar=False), yn.mean(0),
                                                        np.cov(yn, rowvar=False)))

    def torch_fidelity():
        from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

        def call() -> float:
            st1, st2 = fid_features_to_statistics(x.double()), fid_features_to_statistics(y.double())
            return float(fid_statistics_to_metric(st1, st2, False)["frechet_inception_distance"])

        return call

    peers = _time_peers([("pytorch-fid 0.3", "pytorch_fid", pytorch_fid),
                         ("torch-fidelity", "torch_fidelity", torch_fidelity)])
    return _row(f"FD from features, n={n} < d={d}", ours, peers)


def bench_kid(n: int, d: int, n_subsets: int, size: int) -> dict[str, Any]:
    x, y = _features(n, d, 4), _features(n, d, 5, shift=0.02)
    kid(x[:60], y[:60], 3, 50)
    ours = {
        "domainadapt float64": _timed(lambda: kid(x, y, n_subsets, size).mean),
        "domainadapt float32": _timed(lambda: kid(x, y, n_subsets, size, dtype=torch.float32).mean),
    }
    xn, yn = x.numpy(), y.numpy()

    def clean_fid():
        from cleanfid.fid import kernel_distance

        np.random.seed(0)
        return lambda: float(kernel_distance(xn, yn, n_subsets, size))

    def torch_fidelity():
        from torch_fidelity.metric_kid import kid_features_to_metric

        kw = {"kid_subsets": n_subsets, "kid_subset_size": size, "verbose": False, "rng_seed": 0}
        return lambda: float(kid_features_to_metric(x, y, **kw)["kernel_inception_distance_mean"])

    def torchmetrics_loop():
        from torchmetrics.image.kid import poly_mmd

        def call() -> float:
            g = torch.Generator().manual_seed(0)
            vals = [poly_mmd(x[torch.randperm(n, generator=g)[:size]], y[torch.randperm(n, generator=g)[:size]])
                    for _ in range(n_subsets)]
            return float(torch.stack(vals).mean())

        return call

    peers = _time_peers([("clean-fid", "cleanfid", clean_fid), ("torch-fidelity", "torch_fidelity", torch_fidelity),
                         ("torchmetrics poly_mmd loop", "torchmetrics", torchmetrics_loop)])
    row = _row(f"KID n={n}/set d={d} {n_subsets}x{size}", ours, peers)
    row["note"] = "peers draw their own random subsets: values agree to the subset noise, not to rounding"
    return row


def bench_permutation(n: int, d: int, n_perm: int, n_baseline: int, seed: int = 0) -> dict[str, Any]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = torch.randn(n, d, generator=g) + 0.05
    mmd_test(x[:50], y[:50], n_permutations=10)  # warm-up
    t_ours, res = _timed(lambda: mmd_test(x, y, n_permutations=n_perm, seed=seed))
    t_dense, dense = _timed(lambda: mmd_test(x, y, n_permutations=n_perm, seed=seed, route="dense"))
    kernel = GaussianKernel(sigma=res.sigma[0])  # same bandwidth; the baseline does not even redo the median
    z = torch.cat([x, y])
    perms = torch.cat(list(permutation_chunks(2 * n, n_perm, seed)))[:n_baseline]

    def baseline() -> list[float]:
        return [float(mmd2(z[p[:n]], z[p[n:]], kernel=kernel)) for p in perms]

    t_sub, base_vals = _timed(baseline)
    agree = float((torch.tensor(base_vals, dtype=torch.float64) - res.null_statistics[:n_baseline]).abs().max())
    t_base = t_sub * n_perm / n_baseline
    recomputed_observed = float(mmd2(x.double(), y.double(), kernel=kernel))
    peers = {f"mmd2 recomputed per permutation ({n_baseline} timed, x{n_perm / n_baseline:g})": (t_base, recomputed_observed),
             "dense route (pooled matrix held)": (t_dense, dense.statistic)}
    row = _row(f"MMD permutation test n={n}/set d={d} B={n_perm}", {"domainadapt blockwise": (t_ours, res.statistic)}, peers)
    row["max_abs_diff_vs_recomputation"] = agree
    row["p_value"] = res.p_value
    row["same_p_as_dense"] = res.p_value == dense.p_value
    return row


def scale_worker(n: int, d: int, n_perm: int) -> dict[str, Any]:
    """One scale row, run in its own process so its peak memory is its own."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g) + 0.01
    mmd_test(x[:100], y[:100], n_permutations=5)  # load every code path before the measurement
    reset = reset_peak()
    before = status_bytes("VmRSS") or 0
    t, res = _timed(lambda: mmd_test(x, y, n_permutations=n_perm, seed=0))
    peak = peak_bytes()
    N = 2 * n
    work = N * N * (n_perm + 1) / 2
    return {"n_per_set": n, "d": d, "B": n_perm, "s": t, "p_value": res.p_value, "statistic": res.statistic,
            "peak_rss_gib": peak / 2**30, "rss_before_gib": before / 2**30,
            "peak_is_the_tests_own": reset,
            "multiply_adds": work, "gmac_per_s": work / t / 1e9, "dense_matrix_gib": N * N * 8 / 2**30}


def bench_scale(sizes: list[int], d: int, n_perm: int) -> list[dict[str, Any]]:
    rows = []
    for n in sizes:
        out = subprocess.run([sys.executable, __file__, "--scale-worker", str(n), str(d), str(n_perm)],
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"  scale n={n}/set: {r['s']:.1f} s, peak RSS {r['peak_rss_gib']:.2f} GiB (RSS before the test "
              f"{r['rss_before_gib']:.2f}) "
              f"(dense matrix alone: {r['dense_matrix_gib']:.1f} GiB), {r['gmac_per_s']:.1f} GMAC/s", flush=True)
    return rows


def _print(rows: list[dict[str, Any]]) -> None:
    for r in rows:
        print(r["name"])
        for label, o in r["ours"].items():
            print(f"  {label:<44} {o['s']:>9.3f} s  value {o['value']:.10g}")
        for label, o in r["peers"].items():
            if isinstance(o, str):
                print(f"  {label:<44} {o}")
            else:
                print(f"  {label:<44} {o['s']:>9.3f} s  value {o['value']:.10g}  ours x{o['speedup_of_ours']:.2f} faster"
                      f"  rel diff {o['rel_diff']:.1e}")


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--scale-worker":
        print(json.dumps(scale_worker(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--scale", action="store_true", help="also the n = 10k/20k/50k permutation-test rows")
    parser.add_argument("--only-scale", action="store_true", help="only the scale rows")
    parser.add_argument("--out", help="also write the results as JSON to this path")
    args = parser.parse_args()

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    rows: list[dict[str, Any]] = []
    if not args.only_scale:
        if args.quick:
            rows = [bench_frechet_stats(256), bench_frechet_features(100, 256), bench_kid(600, 256, 10, 200),
                    bench_permutation(500, 64, 200, 10)]
        else:
            rows = [bench_frechet_stats(2048), bench_frechet_features(1000, 2048), bench_kid(5000, 2048, 100, 1000),
                    bench_permutation(2000, 64, 1000, 20)]
        _print(rows)
    scale = []
    if args.scale or args.only_scale:
        scale = bench_scale([2000, 5000] if args.quick else [10_000, 20_000, 50_000], 64, 200)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"torch": torch.__version__, "threads": torch.get_num_threads(), "quick": args.quick,
                       "rows": rows, "scale": scale}, f, indent=2)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
