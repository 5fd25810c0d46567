"""Validator score against target test accuracy, one panel per validator (a row per domain pair), a point per
checkpoint coloured by method.

    python paper_figures/validators.py [--results results/validators/checkpoints.csv] [--out results/figures]

Reads experiments/validators.py's checkpoints.csv (never trains). Each panel's title gives the weighted Spearman
correlation of its points (evaluation/validator_study.py). Writes validators.png and .pdf.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _figure import pyplot, results_missing, save  # noqa: E402  (paper_figures/ is the script's folder)

from domainadapt.evaluation.validator_study import weighted_spearman  # noqa: E402

FIXED = {"run", "pair", "method", "lr", "seed", "step", "target_acc", "source_test_acc"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=REPO / "results" / "validators" / "checkpoints.csv")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "figures")
    args = parser.parse_args(argv)
    if results_missing(args.results, "experiments/validators.py"):
        return 2
    pyplot()  # the headless backend, before seaborn imports pyplot
    import pandas as pd
    import seaborn as sns

    frame = pd.read_csv(args.results)
    validators = [c for c in frame.columns if c not in FIXED]
    if not validators or frame.empty:
        print(f"error: {args.results} holds no validator scores", file=sys.stderr)
        return 2
    long = frame.melt(id_vars=["pair", "method", "target_acc"], value_vars=validators, var_name="validator",
                      value_name="score").dropna()
    sns.set_theme(style="whitegrid")
    grid = sns.FacetGrid(long, row="pair", col="validator", hue="method", sharex=False, sharey=True, height=2.6)
    grid.map_dataframe(sns.scatterplot, x="score", y="target_acc", s=14, alpha=0.7)
    for (pair, validator), ax in grid.axes_dict.items():
        part = long[(long["pair"] == pair) & (long["validator"] == validator)]
        rho = weighted_spearman(part["score"], part["target_acc"]) if len(part) > 1 else float("nan")
        ax.set_title(f"{pair}\n{validator}: weighted ρ {rho:.2f}", fontsize=8)
    grid.set_axis_labels("score", "target test accuracy")
    grid.add_legend()
    grid.figure.suptitle("validator score (higher: preferred by the validator) vs target test accuracy, per checkpoint",
                         y=1.02)
    save(grid.figure, args.out, "validators")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
