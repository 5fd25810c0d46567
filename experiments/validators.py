"""Which label-free validator to trust on digits: weighted Spearman correlation of every validator with target
accuracy over a grid of checkpoints, and the target accuracy of the checkpoints each one selects.

    python experiments/validators.py --quick            # CPU: 2 pairs × 4 methods × 2 lr × 2 seeds, 500 steps
    python experiments/validators.py --preset standard  # 3,000 steps (the digits table's scale)

Every run of the grid (experiments/digits.py's recipe) records every registered validator at each evaluation
(`eval_every`), with 20% of source training held out for the ones that read source data (train/selection.py);
the validators never see a target label. Target test accuracy at the same evaluation points is what they are
judged against. Writes OUT/checkpoints.csv (one row per run × evaluation), OUT/correlation.md (weighted
Spearman with a 95% bootstrap interval over checkpoints, per pair; Musgrave et al. 2022, sec. 4) and
OUT/selection.md (per pair and method, averaged over runs: the target accuracy of the checkpoint each validator
picks within a run, next to the last checkpoint and the oracle; the oracle reads target labels and is a bound,
not a method). paper_figures/validators.py draws score against accuracy from checkpoints.csv.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "experiments"))

from digits import PRESETS, RECIPE, parse_pair  # noqa: E402
from domainadapt.evaluation.validator_study import correlation_table, selection_table  # noqa: E402
from domainadapt.io import atomic_write_text  # noqa: E402
from domainadapt.runs import check_inputs, read_result, run_many, run_name  # noqa: E402
from domainadapt.train import TrainConfig  # noqa: E402
from domainadapt.train.logging import read_metrics  # noqa: E402
from domainadapt.validators import available_validators  # noqa: E402

PAIRS = ["mnist:mnist_m", "syndigits:mnist"]
METHODS = ["source_only", "dann", "cdan", "mcc"]
LRS = [1e-3, 3e-4]
EVALS = 10  # evaluation points per run


def build_configs(args: argparse.Namespace) -> list[TrainConfig]:
    preset = {**RECIPE, **PRESETS[args.preset]}
    if args.steps is not None:
        preset["steps"] = args.steps
    validators = {name: {} for name in args.validators}
    configs = []
    for pair, method, lr, seed in itertools.product(args.pairs, args.methods, args.lrs, args.seeds):
        source, target = parse_pair(pair)
        configs.append(TrainConfig(
            method=method, source=source, target=target, seed=seed, device=args.device, progress=False,
            validators=validators, eval_every=max(1, preset["steps"] // EVALS), **{**preset, "lr": lr}))
    return configs


def checkpoint_rows(run_dir: Path, validators: list[str]) -> list[dict]:
    """One row per evaluation of a finished run: its config's grid values, the step, target accuracy and the
    validator scores logged at that step."""
    result = read_result(run_dir)
    if result is None:
        return []
    config = result["config"]
    rows = []
    for record in read_metrics(run_dir / "metrics.jsonl"):
        if f"validator/{validators[0]}" not in record or "target_test/acc" not in record:
            continue
        rows.append({"run": run_dir.name, "pair": f"{config['source']} → {config['target']}",
                     "method": config["method"], "lr": config["lr"], "seed": config["seed"], "step": record["step"],
                     "target_acc": record["target_test/acc"], "source_test_acc": record.get("source_test/acc"),
                     **{v: record.get(f"validator/{v}") for v in validators}})
    return rows


def selection_section(selection: pd.DataFrame, validators: list[str], title: str) -> str:
    """A selection table in points, then every validator's mean distance to the oracle, best first."""
    gap = selection[validators].sub(selection["oracle"], axis=0).mean().sort_values(ascending=False)
    return (title + "\n\n" + (100 * selection.drop(columns="runs")).round(1).assign(runs=selection["runs"]).to_markdown()
            + "\n\nMean distance to the oracle (points; 0 is the oracle itself):\n\n"
            + (100 * gap).round(2).rename("vs oracle").to_frame().to_markdown() + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    scale = parser.add_mutually_exclusive_group()
    scale.add_argument("--preset", choices=sorted(PRESETS), default="quick")
    scale.add_argument("--quick", dest="preset", action="store_const", const="quick", help="= --preset quick")
    parser.add_argument("--pairs", nargs="+", default=PAIRS)
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--lrs", nargs="+", type=float, default=LRS, help="the grid's learning rates")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--validators", nargs="+", default=None, help="default: every registered validator")
    parser.add_argument("--steps", type=int, help="override the preset's steps")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--jobs", type=int, default=max(1, min(2, os.cpu_count() or 1)))
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples of the intervals")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "validators")
    args = parser.parse_args(argv)
    args.validators = args.validators or available_validators()

    try:
        configs = build_configs(args)
        for config in configs:  # every bad name or value fails here, before the first run
            check_inputs(config)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    runs_dir = args.out / "runs"
    t0 = time.perf_counter()
    run_many([(c, runs_dir / run_name(c)) for c in configs], args.jobs, verbose=True)
    wall = time.perf_counter() - t0

    rows = [r for c in configs for r in checkpoint_rows(runs_dir / run_name(c), args.validators)]
    frame = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "checkpoints.csv", frame.to_csv(index=False))

    parts = [f"{len(configs)} runs, {len(frame)} checkpoints ({configs[0].steps} steps, every "
             f"{configs[0].eval_every}); wall time {wall / 60:.1f} min. No target label was read by any validator."]
    for pair, part in frame.groupby("pair"):
        table = correlation_table(part, args.validators, resamples=args.resamples)
        table = table.sort_values("weighted_spearman", ascending=False)
        parts.append(f"\n## {pair}: weighted Spearman with target accuracy (95% bootstrap interval over "
                     f"checkpoints)\n\n" + table.round(3).to_markdown())
    correlation = "\n".join(parts) + "\n"
    atomic_write_text(args.out / "correlation.md", correlation)

    selection_text = selection_section(
        selection_table(frame, args.validators, group=["pair", "method"]), args.validators,
        "Target test accuracy (%) of the checkpoint chosen within each run, mean over the runs of the cell: by each "
        "validator, the last checkpoint, and the oracle (best by target test accuracy; it reads target labels, a "
        "bound).")
    if frame["lr"].nunique() > 1:
        selection_text += "\n" + selection_section(
            selection_table(frame, args.validators, group=["pair", "method"], run="seed"), args.validators,
            f"Checkpoint AND learning rate chosen together: per seed, among every checkpoint of the grid's "
            f"{frame['lr'].nunique()} learning rates (the hyper-parameter selection `domainadapt select` does), mean "
            f"over seeds; 'last' is the mean of the learning rates' last checkpoints (a learning rate picked at "
            f"random), 'oracle' the best checkpoint of any of them.")
    atomic_write_text(args.out / "selection.md", selection_text)
    print(correlation + "\n" + selection_text)
    print(f"tables in {args.out}/correlation.md and selection.md; checkpoints in {args.out}/checkpoints.csv")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
