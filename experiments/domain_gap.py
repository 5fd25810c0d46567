"""Domain-gap table: every pair of the offline digit domains, each divergence with its uncertainty.

    python experiments/domain_gap.py --quick            # pixels, n = 500 per domain, 200 permutations
    python experiments/domain_gap.py                    # pixels, n = 1000, 1000 permutations
    python experiments/domain_gap.py --features inception --fid-weights pt_inception-2015-12-05-6726825d.pth
    python experiments/domain_gap.py --features runs/some_run:backbone   # a trained model's layer

Pairs include each domain against itself (two disjoint samples): the null reference row. Writes
OUT/gap.csv (one row per pair and metric), OUT/gap.json and OUT/table.md; `paper_figures/domain_gap.py`
draws the heatmaps from gap.csv.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pandas as pd  # noqa: E402

from domainadapt.domain_gap import FeatureExtractor, FeatureSpec, measure_domains, summary_rows  # noqa: E402
from domainadapt.io import atomic_write_json, atomic_write_text  # noqa: E402

DOMAINS = ["mnist", "mnist_m", "syndigits", "optdigits"]
METRICS = ["mmd", "fd", "kid", "a_distance"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="n = 500 per domain and 200 permutations")
    parser.add_argument("--domains", nargs="+", default=DOMAINS)
    parser.add_argument("--metrics", nargs="+", default=METRICS)
    parser.add_argument("--features", default="pixels", help="pixels | inception | CHECKPOINT:LAYER")
    parser.add_argument("--n", type=int, help="images per domain (default 1000; 500 with --quick)")
    parser.add_argument("--permutations", type=int, help="MMD permutations (default 1000; 200 with --quick)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--fid-weights")
    parser.add_argument("--data-root")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "domain_gap")
    args = parser.parse_args(argv)
    n = args.n or (500 if args.quick else 1000)
    permutations = args.permutations or (200 if args.quick else 1000)

    try:  # everything checkable fails here, before the first measurement
        from domainadapt.data import available_domains

        known = available_domains()
        bad = [d for d in args.domains if d not in known and not d.startswith(("file:", "folder:"))]
        if bad:
            raise ValueError(f"unknown domain(s) {bad}; available: {', '.join(known)}")
        extractor = FeatureExtractor(FeatureSpec.parse(args.features), device=args.device, fid_weights=args.fid_weights)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    t0 = time.perf_counter()
    rows, results = [], []
    pairs = list(itertools.combinations_with_replacement(args.domains, 2))
    for i, (a, b) in enumerate(pairs, 1):
        result = measure_domains(a, b, features=args.features, metrics=args.metrics, n=n, seed=args.seed,
                                 n_permutations=permutations, data_root=args.data_root, extractor=extractor)
        results.append(result)
        for metric, r in result["metrics"].items():
            rows.append({
                "source": a, "target": b, "metric": metric, "value": r["value"],
                "std": r.get("std"), "p_value": r.get("p_value"),
                "low": r["interval"][0] if "interval" in r else None,
                "high": r["interval"][1] if "interval" in r else None,
                "n": result["n_source"], "features": args.features,
            })
        print(f"[{i}/{len(pairs)}] {a} vs {b}: " + ", ".join(f"{m} {r['value']:.4g}" for m, r in result["metrics"].items()),
              flush=True)
    wall = time.perf_counter() - t0

    frame = pd.DataFrame(rows)
    table_rows = []
    for result in results:
        row = {"pair": f"{result['source']} vs {result['target']}"}
        for s in summary_rows(result):
            row[s["metric"]] = f"{s['value']:.4g} ({s['uncertainty']})" if s["uncertainty"] else f"{s['value']:.4g}"
        table_rows.append(row)
    table = pd.DataFrame(table_rows).set_index("pair")
    header = (f"Domain gap on {args.features} features, n = {n} images per domain (disjoint halves on the diagonal), "
              f"seed {args.seed}. mmd: unbiased MMD² (Gaussian kernel, median bandwidth) with its permutation p-value; "
              f"fd: Fréchet distance ± bootstrap std; kid: mean ± std over subsets; a_distance: proxy A-distance with "
              f"a 95% interval.")
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "gap.csv", frame.to_csv(index=False))
    atomic_write_json(args.out / "gap.json", {"n": n, "permutations": permutations, "results": results})
    atomic_write_text(args.out / "table.md", header + "\n\n" + table.to_markdown() + "\n")
    print(header)
    print(table.to_markdown())
    print(f"wall time {wall:.0f} s; written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
