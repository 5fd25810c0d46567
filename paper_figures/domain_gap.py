"""Heatmaps of the domain gap, one per measure, from results written by experiments/domain_gap.py.

    python paper_figures/domain_gap.py [--results results/domain_gap/gap.csv] [--out results/figures]

Reads only results (never trains or measures). Writes domain_gap.png and domain_gap.pdf.
"""

from __future__ import annotations

import argparse
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

from _figure import pyplot, results_missing, save  # noqa: E402  (paper_figures/ is the script's folder)

TITLES = {"mmd": "MMD² (unbiased)", "fd": "Fréchet distance", "kid": "KID", "a_distance": "proxy A-distance"}


def gap_matrix(frame, metric: str):
    """Symmetric domain × domain matrix of one measure (the measures here are symmetric or nearly so)."""
    import pandas as pd

    sub = frame[frame["metric"] == metric]
    domains = list(dict.fromkeys([*sub["source"], *sub["target"]]))
    matrix = pd.DataFrame(float("nan"), index=domains, columns=domains)
    for _, r in sub.iterrows():
        matrix.loc[r["source"], r["target"]] = r["value"]
        matrix.loc[r["target"], r["source"]] = r["value"]
    return matrix


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=REPO / "results" / "domain_gap" / "gap.csv")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "figures")
    args = parser.parse_args(argv)
    if results_missing(args.results, "experiments/domain_gap.py"):
        return 2
    plt = pyplot()
    import pandas as pd
    import seaborn as sns

    frame = pd.read_csv(args.results)
    metrics = [m for m in TITLES if m in set(frame["metric"])]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.8), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        sns.heatmap(gap_matrix(frame, metric), annot=True, fmt=".3g", cmap="viridis", square=True, cbar=False, ax=ax)
        ax.set_title(TITLES[metric])
    features = frame["features"].iloc[0] if "features" in frame else "?"
    fig.suptitle(f"Domain gap between digit domains ({features} features, n = {int(frame['n'].iloc[0])} per domain)")
    fig.tight_layout()
    save(fig, args.out, "domain_gap")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
