"""Negative transfer figures, from experiments/negative_transfer.py's results (never trains).

  ntg_vs_size.png   NTG (points, 95% interval) against labelled target size, one line per source, one panel per
                    target × strategy; above the dashed zero line the source hurts (Wang et al. 2019).
  gain_vs_gap.png   transfer gain (acc_transfer − acc_scratch) against each pixel-space gap measure, one panel per
                    measure, with Spearman's ρ and p in the title.

    python paper_figures/negative_transfer.py [--results results/negative_transfer] [--out results/figures]
"""

from __future__ import annotations

import argparse
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

from _figure import pyplot, results_missing, save  # noqa: E402  (paper_figures/ is the script's folder)

MEASURES = {"mmd": "MMD²", "fd": "Fréchet distance", "kid": "KID", "a_distance": "proxy A-distance"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=REPO / "results" / "negative_transfer")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "figures")
    args = parser.parse_args(argv)
    if results_missing(args.results / "ntg.csv", "experiments/negative_transfer.py"):
        return 2
    plt = pyplot()
    import pandas as pd
    import seaborn as sns
    from scipy.stats import spearmanr

    ntg = pd.read_csv(args.results / "ntg.csv")
    gaps = pd.read_csv(args.results / "gaps.csv")
    sns.set_theme(style="whitegrid")

    panels = list(ntg.groupby(["target", "strategy"], sort=False))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False, sharey=True)
    order = sorted(ntg.per_class.unique(), key=lambda k: (k == 0, k))
    labels = ["all" if k == 0 else str(k) for k in order]
    palette = dict(zip(sorted(ntg.source.unique()), sns.color_palette("tab10")))
    for ax, ((target, strategy), g) in zip(axes[0], panels):
        for source, gs in g.groupby("source"):
            gs = gs.set_index("per_class").loc[[k for k in order if k in set(gs.per_class)]]
            x = [order.index(k) for k in gs.index]
            ax.errorbar(x, 100 * gs.ntg, yerr=[100 * (gs.ntg - gs.low), 100 * (gs.high - gs.ntg)], marker="o",
                        capsize=3, label=source, color=palette[source])
        ax.axhline(0, color="grey", linestyle="--", linewidth=1)
        ax.set_xticks(range(len(order)), labels)
        ax.set_xlabel("labelled target examples per class")
        ax.set_title(f"target {target}, {strategy}")
    axes[0][0].set_ylabel("NTG (points; > 0: negative transfer)")
    axes[0][-1].legend(fontsize=8, title="source")
    fig.tight_layout()
    save(fig, args.out, "ntg_vs_size")

    points = ntg.merge(gaps, on=["target", "source"]).assign(gain=lambda d: -100 * d.ntg)
    measures = [m for m in MEASURES if m in points]
    fig, axes = plt.subplots(1, len(measures), figsize=(4.5 * len(measures), 4), squeeze=False, sharey=True)
    for ax, m in zip(axes[0], measures):
        sns.scatterplot(data=points, x=m, y="gain", hue="source", style="strategy", ax=ax, palette=palette,
                        legend=ax is axes[0][-1])
        rho, p = spearmanr(points[m], points.gain) if points[m].nunique() > 1 else (float("nan"), float("nan"))
        ax.set_title(f"{MEASURES[m]}: ρ = {rho:.2f} (p = {p:.2g})", fontsize=10)
        ax.set_xlabel(f"{MEASURES[m]} (pixels)")
        ax.axhline(0, color="grey", linestyle="--", linewidth=1)
    axes[0][0].set_ylabel("transfer gain (points)")
    if axes[0][-1].get_legend() is not None:
        sns.move_legend(axes[0][-1], "upper left", bbox_to_anchor=(1, 1), fontsize=7)
    fig.tight_layout()
    save(fig, args.out, "gain_vs_gap")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
