"""When does a pretrained source help, and when does it hurt? The negative-transfer gap against the domain gap.

Wang et al. 2019 (CVPR, "Characterizing and Avoiding Negative Transfer"), eq. 2: NTG = ε_T(source → target) −
ε_T(target only); NTG > 0 is negative transfer. Per target domain, labelled target size (per class) and seed:
  scratch             the target-only control: random init, trained on the labelled target examples;
  feature_extraction  the source model's backbone frozen, a head trained on them;
  full                the source model fine-tuned entirely.
Sources run from near to far, plus a control that should hurt: "shuffled:NAME", a source whose labels are permuted
across its examples (its features learn nothing about digits). NTG is paired by seed (same labelled subset, same
seed) with a 95% t-interval. The domain gap of every (source, target) pair is measured on pixels (MMD², Fréchet
distance, KID, proxy A-distance; `domainadapt.domain_gap`) and Spearman's ρ (with its p-value) tells how well
each predicts the transfer gain (acc_transfer − acc_scratch).
Writes runs.csv, ntg.csv, gaps.csv, correlations.csv, table.md to --out; figures: paper_figures/negative_transfer.py.

    python experiments/negative_transfer.py [--quick] [--targets mnist] [--seeds 0 1 2] [--jobs 2] [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pandas as pd  # noqa: E402

from domainadapt.evaluation.negative_transfer import negative_transfer_gap  # noqa: E402
from domainadapt.io import atomic_write_text  # noqa: E402
from domainadapt.runs import check_inputs, run_many, run_name  # noqa: E402
from domainadapt.strategies import apply_strategy  # noqa: E402
from domainadapt.train import TrainConfig  # noqa: E402

from _transfer import add_common_args, finetune_config, pretrain_config, resolve  # noqa: E402  (experiments/)

SOURCES = {"mnist": ["syndigits", "mnist_m", "optdigits", "shuffled:syndigits"],
           "mnist_m": ["mnist", "syndigits", "optdigits", "shuffled:mnist"]}
PRESETS = {"quick": dict(pre_steps=500, ft_steps=300, image_size=28, sizes=[5, 20, 0]),
           "standard": dict(pre_steps=2000, ft_steps=1000, image_size=32, sizes=[2, 5, 20, 100, 0])}
STRATEGIES = ["feature_extraction", "full"]
GAP_METRICS = ["mmd", "fd", "kid", "a_distance"]


def size_label(per_class: int) -> str:
    return "all" if per_class == 0 else f"{per_class}/class"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", nargs="+", default=["mnist", "mnist_m"])
    parser.add_argument("--sources", nargs="+", help="sources for every target (default: near to far + shuffled control)")
    parser.add_argument("--gap-n", type=int, default=500, help="images per domain for the gap measures")
    add_common_args(parser, REPO / "results" / "negative_transfer")
    args = parser.parse_args(argv)
    p, sizes, pre_steps, ft_steps = resolve(args, PRESETS)
    runs = args.out / "runs"
    t0 = time.perf_counter()

    pre_jobs: dict[tuple[str, str, int], TrainConfig] = {}
    ft_jobs: dict[tuple[str, str, str, int, int], TrainConfig] = {}
    for target in args.targets:
        for source in args.sources or SOURCES.get(target, SOURCES["mnist"]):
            for s in args.seeds:
                pre_jobs[(target, source, s)] = pretrain_config(source, target, s, pre_steps, p["image_size"], args.device)
        for k in sizes:
            for s in args.seeds:
                base = finetune_config(target, k, s, ft_steps, p["image_size"], args.device)
                ft_jobs[(target, "none", "scratch", k, s)] = apply_strategy(base, "scratch")
                for source in args.sources or SOURCES.get(target, SOURCES["mnist"]):
                    pre_dir = runs / run_name(pre_jobs[(target, source, s)])
                    for strategy in STRATEGIES:
                        ft_jobs[(target, source, strategy, k, s)] = apply_strategy(base, strategy, init_from=str(pre_dir))
    try:
        for c in pre_jobs.values():
            check_inputs(c)
        for c in ft_jobs.values():
            if c.init_from is None:
                check_inputs(c)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    run_many([(c, runs / run_name(c)) for c in pre_jobs.values()], args.jobs)
    ft_results = run_many([(c, runs / run_name(c)) for c in ft_jobs.values()], args.jobs)
    frame = pd.DataFrame([{"target": t, "source": src, "strategy": st, "per_class": k, "seed": s,
                           "acc": r["metrics"]["target_test/acc"], "target_train": r["sizes"]["target_train"]}
                          for (t, src, st, k, s), r in zip(ft_jobs, ft_results)])

    ntg_rows = []
    for (target, source, strategy, k), g in frame[frame.strategy != "scratch"].groupby(
            ["target", "source", "strategy", "per_class"], sort=False):
        control = frame[(frame.target == target) & (frame.strategy == "scratch") & (frame.per_class == k)]
        gap = negative_transfer_gap(dict(zip(g.seed, g.acc)), dict(zip(control.seed, control.acc)), accuracies=True)
        ntg_rows.append({"target": target, "source": source, "strategy": strategy, "per_class": k,
                         "size": size_label(k), "acc_transfer": g.acc.mean(), "acc_scratch": control.acc.mean(),
                         "ntg": gap.gap, "low": gap.low, "high": gap.high,
                         "verdict": "negative" if gap.low > 0 else "positive" if gap.high < 0 else "inconclusive"})
    ntg = pd.DataFrame(ntg_rows)

    gaps = measure_gaps(sorted({(t, src) for t, src, *_ in ft_jobs if src != "none"}), args.gap_n, p["image_size"])
    correlations = gap_correlations(ntg, gaps)
    wall = time.perf_counter() - t0

    shown = ntg.assign(**{"NTG (points) [95% CI]": [f"{100 * r.ntg:+.1f} [{100 * r.low:+.1f}, {100 * r.high:+.1f}]"
                                                  for r in ntg.itertuples()],
                          "acc transfer / scratch (%)": [f"{100 * r.acc_transfer:.1f} / {100 * r.acc_scratch:.1f}"
                                                         for r in ntg.itertuples()]})
    text = (f"Negative-transfer gap NTG = ε_T(source→target) − ε_T(scratch) (Wang et al. 2019), paired by seed over "
            f"{args.seeds}; pretraining {pre_steps} steps, fine-tuning {ft_steps} steps, {p['image_size']}px, digits CNN "
            f"+ BN, Adam 1e-3. NTG > 0 with its interval above 0 = negative transfer. Wall time {wall / 60:.1f} min.\n\n")
    for target, g in shown.groupby("target", sort=False):
        text += f"### target {target}\n\n" + g[["source", "strategy", "size", "acc transfer / scratch (%)",
                                                "NTG (points) [95% CI]", "verdict"]].to_markdown(index=False) + "\n\n"
    text += ("Spearman ρ between the transfer gain (acc_transfer − acc_scratch, per source, strategy and size) and "
             "each pixel-space gap measure of (source, target); the points of one source share its gap value, so n "
             "points carry only as many distinct gaps as there are sources:\n\n" + correlations.to_markdown(index=False) + "\n")
    args.out.mkdir(parents=True, exist_ok=True)
    for name, table in [("runs", frame), ("ntg", ntg), ("gaps", gaps), ("correlations", correlations)]:
        atomic_write_text(args.out / f"{name}.csv", table.to_csv(index=False))
    atomic_write_text(args.out / "table.md", text)
    print(text)
    return 0


def measure_gaps(pairs: list[tuple[str, str]], n: int, image_size: int) -> pd.DataFrame:
    """Every gap measure of each (source, target) pair on pixels (a shuffled source has its images' gap)."""
    from domainadapt.domain_gap import measure_domains

    rows = []
    for target, source in pairs:
        images = source.removeprefix("shuffled:")
        result = measure_domains(images, target, metrics=GAP_METRICS, n=n, n_permutations=100, image_size=image_size)
        rows.append({"target": target, "source": source,
                     **{m: result["metrics"][m]["value"] for m in GAP_METRICS}})
    return pd.DataFrame(rows)


def gap_correlations(ntg: pd.DataFrame, gaps: pd.DataFrame) -> pd.DataFrame:
    """Spearman ρ (and p) of the transfer gain against each gap measure, per strategy, over (source, size) points;
    with and without the shuffled-label control (its pixels are a real domain's, its labels are noise)."""
    from scipy.stats import spearmanr

    points = ntg.merge(gaps, on=["target", "source"]).assign(gain=lambda d: -d.ntg)
    rows = []
    for strategy, g in points.groupby("strategy", sort=False):
        for subset, part in [("all sources", g), ("without shuffled", g[~g.source.str.startswith("shuffled:")])]:
            for m in GAP_METRICS:
                if part[m].nunique() < 2 or len(part) < 3:
                    continue
                rho, pval = spearmanr(part[m], part.gain)
                rows.append({"strategy": strategy, "points": subset, "measure": m, "n": len(part),
                             "rho": round(float(rho), 3), "p": float(pval)})
    return pd.DataFrame(rows, columns=["strategy", "points", "measure", "n", "rho", "p"])


if __name__ == "__main__":
    raise SystemExit(main())
