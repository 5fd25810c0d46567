"""Digits benchmark table: target accuracy (mean ± std over seeds) of each method on each domain pair.

    python experiments/digits.py --quick     # CPU, minutes (what `make reproduce` runs)
    python experiments/digits.py --full      # paper-scale steps, for a GPU

Pairs follow Ganin et al. 2016 (JMLR, Table 2) on the offline domains: mnist→mnist_m, syndigits→mnist,
mnist→syndigits, mnist→optdigits. Model selection: none; the final step is reported (no target labels are
used to pick anything). Runs land in OUT/runs/<run>/; finished runs are read, not re-run, so an interrupted
sweep continues where it stopped. Writes OUT/table.md, OUT/table.tex and OUT/runs.csv.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from domainadapt.io import atomic_write_text  # noqa: E402
from domainadapt.report import collect, render, summary_table  # noqa: E402
from domainadapt.runs import check_inputs, run, run_name  # noqa: E402
from domainadapt.train import TrainConfig  # noqa: E402

PAIRS = ["mnist:mnist_m", "syndigits:mnist", "mnist:syndigits", "mnist:optdigits"]
METHODS = ["source_only", "target_oracle"]
# Ganin et al. 2016, sec. 5.2.2: SGD momentum 0.9, μ0 = 0.01 annealed as μ0/(1+10p)^0.75, batch 128
# (64 source + 64 target). --full uses their scale of training; --quick fits the 24 runs in minutes on 2 CPU cores.
PRESETS = {
    "quick": dict(steps=1000, batch_size=64, lr=0.01, schedule="dann", momentum=0.9, weight_decay=5e-4),
    "full": dict(steps=20000, batch_size=64, lr=0.01, schedule="dann", momentum=0.9, weight_decay=5e-4),
}


def build_configs(args: argparse.Namespace) -> list[TrainConfig]:
    preset = dict(PRESETS["full" if args.full else "quick"])
    if args.steps is not None:
        preset["steps"] = args.steps
    configs = []
    for pair in args.pairs:
        if ":" not in pair or pair.count(":") != 1 and not pair.split(":", 1)[1]:
            raise SystemExit(f"error: a pair is SOURCE:TARGET, got '{pair}'")
        source, target = pair.split(":", 1)
        for method in args.methods:
            for seed in args.seeds:
                configs.append(TrainConfig(method=method, source=source, target=target, seed=seed, device=args.device,
                                           data_root=args.data_root, progress=False, **preset))
    return configs


def _run_one(config: TrainConfig, root: str, threads: int) -> str:
    import torch

    torch.set_num_threads(threads)
    run(config, Path(root) / run_name(config))
    return run_name(config)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    scale = parser.add_mutually_exclusive_group()
    scale.add_argument("--quick", action="store_true", help="CPU-sized steps (default)")
    scale.add_argument("--full", action="store_true", help="paper-scale steps (GPU)")
    parser.add_argument("--pairs", nargs="+", default=PAIRS, help="SOURCE:TARGET domain pairs")
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, help="override the preset's steps")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data-root", help="torchvision data folder (full MNIST, USPS, SVHN)")
    parser.add_argument("--jobs", type=int, default=max(1, min(2, os.cpu_count() or 1)),
                        help="runs in parallel processes (CPU); 1 on a GPU")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "digits")
    args = parser.parse_args(argv)

    configs = build_configs(args)
    try:
        for config in configs:  # every bad name or value fails here, before the first run
            check_inputs(config)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    runs_dir = args.out / "runs"
    t0 = time.perf_counter()
    _prebuild_domains(configs)
    jobs = 1 if any(c.device.startswith("cuda") for c in configs) else args.jobs
    threads = max(1, (os.cpu_count() or 1) // jobs)
    if jobs == 1:
        for i, config in enumerate(configs, 1):
            _run_one(config, str(runs_dir), threads)
            print(f"[{i}/{len(configs)}] {run_name(config)}", flush=True)
    else:
        from multiprocessing import get_context

        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(_run_one, c, str(runs_dir), threads) for c in configs]
            for i, future in enumerate(futures, 1):
                print(f"[{i}/{len(configs)}] {future.result()}", flush=True)
    wall = time.perf_counter() - t0

    names = {run_name(c) for c in configs}
    frame = collect([runs_dir / n for n in sorted(names)])
    frame["pair"] = frame["source"] + " → " + frame["target"]
    table = summary_table(frame, metric="target_test/acc", rows=["pair"], cols="method", col_order=args.methods)
    table.index.name = "source → target"
    preset = "full" if args.full else "quick"
    header = (f"Target test accuracy (%), mean ± std (n seeds); preset {preset}, "
              f"{configs[0].steps} steps, batch {configs[0].batch_size} per domain, final step (no model selection).")
    atomic_write_text(args.out / "table.md", header + "\n\n" + render(table, "markdown") + "\n")
    atomic_write_text(args.out / "table.tex", render(table, "latex"))
    atomic_write_text(args.out / "runs.csv", frame.to_csv(index=False))
    print(header)
    print(render(table, "markdown"))
    print(f"wall time {wall:.0f} s for {len(configs)} runs; table in {args.out / 'table.md'}")
    return 0


def _prebuild_domains(configs: list[TrainConfig]) -> None:
    """Build (and cache) each domain once in this process, so parallel runs do not build it twice."""
    from domainadapt.data import load_domain

    for name in sorted({c.source for c in configs} | {c.target for c in configs}):
        load_domain(name, root=configs[0].data_root, image_size=configs[0].image_size)


if __name__ == "__main__":
    raise SystemExit(main())
