"""t-SNE of source and target features before and after adaptation, coloured by domain.

    python paper_figures/tsne.py RUN_BEFORE RUN_AFTER [RUN ...] [--n 500] [--out results/figures]

Each RUN is a finished run directory (e.g. source_only and dann on the same pair, from experiments/digits.py).
The figure reads the runs' checkpoints and embeds their backbone features of the source and target *test*
images (a forward pass; nothing is trained). One panel per run. Writes tsne.png and tsne.pdf.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _figure import pyplot, save  # noqa: E402  (paper_figures/ is the script's folder)


def run_features(run_dir: Path, n: int, seed: int):
    """(features, domain names, class labels) of n source-test and n target-test images of a run."""
    import torch

    from domainadapt.data import load_splits
    from domainadapt.inference import extract_features
    from domainadapt.domain_gap import sample_domain
    from domainadapt.runs import load_trained_model

    model, config = load_trained_model(run_dir)
    rows, domains, labels = [], [], []
    for role in ("source", "target"):
        name = getattr(config, role)
        test = load_splits(name, root=config.data_root, image_size=config.image_size,
                           test_fraction=config.test_fraction, split_seed=config.split_seed)["test"]
        test = sample_domain(test, n, seed)
        rows.append(extract_features(model, test.images.float() / 255.0, ["backbone"])["backbone"])
        domains += [f"{role}: {name}"] * len(test)
        labels += test.labels.tolist()
    return torch.cat(rows).numpy(), domains, labels, config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--n", type=int, default=500, help="test images per domain")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--perplexity", type=float, default=30.0)
    parser.add_argument("--out", type=Path, default=REPO / "results" / "figures")
    args = parser.parse_args(argv)
    missing = [str(r) for r in args.runs if not (r / "checkpoints" / "last.pt").is_file()]
    if missing:
        print(f"error: not finished run directories (no checkpoints/last.pt): {missing}", file=sys.stderr)
        return 2

    plt = pyplot()
    import pandas as pd
    import seaborn as sns
    from sklearn.manifold import TSNE

    fig, axes = plt.subplots(1, len(args.runs), figsize=(5 * len(args.runs), 4.6), squeeze=False)
    for ax, run_dir in zip(axes[0], args.runs):
        features, domains, labels, config = run_features(run_dir, args.n, args.seed)
        perplexity = min(args.perplexity, (len(features) - 1) / 3)
        xy = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=args.seed).fit_transform(features)
        frame = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "domain": domains, "class": labels})
        sns.scatterplot(data=frame, x="x", y="y", hue="domain", s=6, linewidth=0, alpha=0.7, ax=ax)
        ax.set_title(f"{config.method}: {config.source} → {config.target}")
        ax.set_xticks([]), ax.set_yticks([]), ax.set_xlabel(""), ax.set_ylabel("")
    fig.tight_layout()
    save(fig, args.out, "tsne")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
