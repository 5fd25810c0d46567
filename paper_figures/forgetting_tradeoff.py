"""Source vs target accuracy after fine-tuning, across the regularisation strength: one curve per method,
one panel per fine-tuning target.

    python paper_figures/forgetting_tradeoff.py [--results results/forgetting/finetune.csv] [--out results/figures]

Reads results written by experiments/forgetting.py (never trains). Points are means over seeds with ±1 std
bars; EWC and L2-SP are curves over λ / α, plain fine-tuning and the frozen backbone are single points.
Writes forgetting_tradeoff.png and .pdf.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

from _figure import pyplot, results_missing, save  # noqa: E402  (paper_figures/ is the script's folder)


def family_and_strength(variant: str) -> tuple[str, float]:
    """'ewc λ=100' → ('ewc', 100.0); 'finetune' → ('finetune', nan)."""
    m = re.match(r"^(\S+) [λα]=([0-9.e+-]+)$", variant)
    return (m.group(1), float(m.group(2))) if m else (variant, float("nan"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=REPO / "results" / "forgetting" / "finetune.csv")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "figures")
    args = parser.parse_args(argv)
    if results_missing(args.results, "experiments/forgetting.py"):
        return 2
    plt = pyplot()
    import pandas as pd
    import seaborn as sns

    frame = pd.read_csv(args.results)
    if "target_domain" not in frame:
        frame["target_domain"] = "target"
    frame[["family", "strength"]] = frame["variant"].apply(lambda v: pd.Series(family_and_strength(v)))
    sns.set_theme(style="whitegrid")
    targets = list(dict.fromkeys(frame["target_domain"]))
    fig, axes = plt.subplots(1, len(targets), figsize=(6 * len(targets), 4.5), squeeze=False)
    palette = dict(zip(sorted(frame["family"].unique()), sns.color_palette("tab10")))
    for ax, target in zip(axes[0], targets):
        part = frame[frame["target_domain"] == target]
        stats = part.groupby(["variant", "family", "strength"], dropna=False).agg(
            source=("source_after", "mean"), source_sd=("source_after", "std"),
            target=("target", "mean"), target_sd=("target", "std")).reset_index()
        for family, g in stats.groupby("family"):
            g = g.sort_values("strength")
            ax.errorbar(100 * g["target"], 100 * g["source"], xerr=100 * g["target_sd"], yerr=100 * g["source_sd"],
                        marker="o", capsize=2, label=family, color=palette[family],
                        linestyle="-" if len(g) > 1 else "none")
            for _, r in g.iterrows():
                if r["strength"] == r["strength"]:  # not NaN
                    ax.annotate(f"{r['strength']:g}", (100 * r["target"], 100 * r["source"]), fontsize=7,
                                xytext=(3, 3), textcoords="offset points")
        ax.axhline(100 * part["source_before"].mean(), color="grey", linestyle=":", label="source before fine-tuning")
        ax.set_xlabel(f"{target} accuracy after fine-tuning (%)")
        ax.set_ylabel("mnist accuracy after fine-tuning (%)")
        ax.set_title(f"mnist → {target} (labels: λ or α)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    save(fig, args.out, "forgetting_tradeoff")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
