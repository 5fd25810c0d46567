"""Heatmap of vocabulary overlap between text domains (Gururangan et al., 2020, "Don't Stop Pretraining", Fig. 2).

    python paper_figures/vocab_overlap.py [--results results/dapt/vocab_overlap.csv] [--out results/figures]
    python paper_figures/vocab_overlap.py --corpora dictd:foldoc dictd:jargon dictd:gcide [--k 10000]
                                          [--save results/dapt/vocab_overlap.csv]

--results reads overlaps an experiment wrote: a CSV/JSON of rows (a, b, overlap) in percent, or a square
CSV (first column = corpus names). --corpora computes them instead, with domainadapt.text.vocab.vocab_overlap
on the top-k unigrams (stop words excluded) of each corpus (specs as domainadapt.text.corpora.load_text).
Writes vocab_overlap.png and vocab_overlap.pdf.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from _figure import (  # paper_figures/, the script's folder, is on sys.path
    pyplot,
    results_missing,
    save,
)

REPO = Path(__file__).resolve().parents[1]


def read_overlaps(path: Path):
    """Square corpus × corpus DataFrame from a long (a, b, overlap) or square table; the diagonal is 100."""
    import pandas as pd

    frame = pd.read_json(path) if path.suffix.lower() == ".json" else pd.read_csv(path)
    if {"a", "b", "overlap"} <= set(frame.columns):
        names = list(dict.fromkeys([*frame["a"], *frame["b"]]))
        square = pd.DataFrame(float("nan"), index=names, columns=names)
        for name in names:
            square.loc[name, name] = 100.0
        for _, row in frame.iterrows():
            square.loc[row["a"], row["b"]] = square.loc[row["b"], row["a"]] = float(row["overlap"])
        return square
    square = frame.set_index(frame.columns[0])
    square.index.name = None
    return square.astype(float)


def compute_overlaps(specs: list[str], k: int):
    sys.path.insert(0, str(REPO))
    from domainadapt.text.corpora import load_text
    from domainadapt.text.vocab import vocab_overlap

    return vocab_overlap({spec.split(":", 1)[-1]: load_text(spec)["text"] for spec in specs}, k)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=REPO / "results" / "dapt" / "vocab_overlap.csv")
    parser.add_argument("--corpora", nargs="+", metavar="SPEC", help="compute from these corpora instead")
    parser.add_argument("--k", type=int, default=10_000, help="top-k unigrams per corpus (with --corpora)")
    parser.add_argument("--save", type=Path, help="with --corpora: also write the square overlap table here (CSV)")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "figures")
    args = parser.parse_args(argv)
    if args.corpora:
        if len(args.corpora) < 2:
            parser.error("--corpora needs at least two corpora")
        square = compute_overlaps(args.corpora, args.k)
        if args.save:
            args.save.parent.mkdir(parents=True, exist_ok=True)
            square.to_csv(args.save)
        sizes = square.attrs["sizes"]
        subtitle = f"top {args.k:,} unigrams" + ("" if min(sizes.values()) >= args.k else
                                                  f" (fewer in {', '.join(n for n, v in sizes.items() if v < args.k)})")
    else:
        if results_missing(args.results, "an experiment that writes vocabulary overlaps (or pass --corpora)"):
            return 2
        square = read_overlaps(args.results)
        subtitle = args.results.name
    plt = pyplot()
    import seaborn as sns

    side = 1.2 + 1.1 * len(square)
    fig, ax = plt.subplots(figsize=(side + 1.0, side))
    sns.heatmap(square, annot=True, fmt=".1f", cmap="Blues", vmin=0, vmax=100, square=True,
                cbar_kws={"label": "vocabulary overlap (%)"}, ax=ax)
    ax.set(xlabel="", ylabel="", title=f"Vocabulary overlap (%)\n{subtitle}, stop words excluded")
    ax.title.set_fontsize(10)
    fig.tight_layout()
    save(fig, args.out, "vocab_overlap")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
