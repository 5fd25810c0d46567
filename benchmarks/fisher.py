"""Exact diagonal Fisher: vmap per-sample gradients vs a per-sample autograd loop, and the error of the
"square the batch-mean gradient" shortcut that several libraries use.

On the digits CNN (Ganin et al.) and N random 32×32 images, with labels sampled from the model (the "true"
Fisher), both exact methods compute the same F (checked); they are timed in one run, interleaved, median of
--repeats. The shortcut averages (∇ mean-over-a-batch loss)² over batches of size b: b=1 is the exact Fisher,
and for larger b it drops the per-sample variance, so it shrinks roughly like 1/b.

    python benchmarks/fisher.py [--n 256] [--repeats 3] [--threads 1] [--quick] [--out fisher.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from domainadapt.regularizers.fisher import diagonal_fisher, sample_fisher_labels
from domainadapt.models import build_model


def loop_fisher(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """The definition, one example at a time: autograd.grad per example, squared, averaged."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    total = [torch.zeros_like(p) for p in params]
    for i in range(len(x)):
        grads = torch.autograd.grad(F.cross_entropy(model(x[i : i + 1]), y[i : i + 1]), params)
        for t, g in zip(total, grads):
            t += g * g
    return {n: t / len(x) for (n, _), t in zip(named, total)}


def shortcut_fisher(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int) -> dict[str, torch.Tensor]:
    """Mean over batches of the squared gradient of the batch-mean loss (not a Fisher for batch > 1)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    total = [torch.zeros_like(p) for _, p in named]
    starts = range(0, len(x), batch)
    for s in starts:
        grads = torch.autograd.grad(F.cross_entropy(model(x[s : s + batch]), y[s : s + batch]), [p for _, p in named])
        for t, g in zip(total, grads):
            t += g * g
    return {n: t / len(starts) for (n, _), t in zip(named, total)}


def flat(f: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([v.double().flatten() for _, v in sorted(f.items())])


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=256, help="number of random images")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk-size", type=int, default=64)
    parser.add_argument("--backbone", default="digits_cnn", help="digits_cnn (default) or mlp")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="n=64, 2 repeats")
    parser.add_argument("--out", type=Path, help="write the numbers as JSON")
    args = parser.parse_args()
    if args.quick:
        args.n, args.repeats = 64, 2
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    model = build_model(args.backbone, 10, 32).to(device).eval()
    x = torch.rand(args.n, 3, 32, 32, generator=torch.Generator().manual_seed(1)).to(device)
    y = sample_fisher_labels(model, x, torch.zeros(args.n, dtype=torch.long, device=device), "true",
                             torch.Generator().manual_seed(2))  # labels from the model: the "true" Fisher

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def run_vmap():
        out = diagonal_fisher(model, (x, y), kind="empirical", chunk_size=args.chunk_size, batch_size=args.n)
        sync()
        return out

    def run_loop():
        out = loop_fisher(model, x, y)
        sync()
        return out

    fisher_vmap, fisher_loop = run_vmap(), run_loop()  # warm-up, and the values compared below
    rounds: dict[str, list[float]] = {"vmap": [], "loop": []}
    for _ in range(args.repeats):  # interleaved: machine load hits both alike
        rounds["vmap"].append(timed(run_vmap)[0])
        rounds["loop"].append(timed(run_loop)[0])
    t_vmap, t_loop = statistics.median(rounds["vmap"]), statistics.median(rounds["loop"])

    exact = flat(fisher_loop)
    agreement = float((flat(fisher_vmap) - exact).norm() / exact.norm())
    shortcut = {}
    for b in sorted({1, 32, args.n}):
        s = flat(shortcut_fisher(model, x, y, b))
        shortcut[b] = {"rel_error": float((s - exact).norm() / exact.norm()), "sum_ratio": float(s.sum() / exact.sum())}

    result = {"backbone": args.backbone, "device": str(device), "threads": torch.get_num_threads(), "n": args.n, "chunk_size": args.chunk_size,
              "repeats": args.repeats, "params": int(exact.numel()),
              "seconds": {"vmap": t_vmap, "loop": t_loop}, "rounds": rounds, "speedup": t_loop / t_vmap,
              "vmap_vs_loop_rel_diff": agreement, "shortcut_vs_exact": {str(b): v for b, v in shortcut.items()}}
    print(f"{args.backbone}, {exact.numel()} parameters, N={args.n}, {result['threads']} thread(s), {device}, "
          f"median of {args.repeats}")
    print(f"{'exact Fisher':22s} {'seconds':>9s} {'ms/example':>11s}")
    print(f"{'per-sample loop':22s} {t_loop:9.3f} {1e3 * t_loop / args.n:11.3f}")
    print(f"{'vmap (diagonal_fisher)':22s} {t_vmap:9.3f} {1e3 * t_vmap / args.n:11.3f}")
    print(f"speed-up {t_loop / t_vmap:.2f}×   ‖F_vmap − F_loop‖/‖F_loop‖ = {agreement:.1e}")
    print(f"\n{'shortcut batch b':18s} {'‖F_b − F‖/‖F‖':>14s} {'ΣF_b / ΣF':>10s}")
    for b, v in shortcut.items():
        print(f"{b:<18d} {v['rel_error']:14.3f} {v['sum_ratio']:10.4f}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
