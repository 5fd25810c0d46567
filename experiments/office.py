"""Office-31 / Office-Home / VisDA-2017 / DomainNet table: target accuracy (mean ± std over seeds) of each method
on every transfer task of the benchmark, the average column, and the published rows beside ours.

    python experiments/office.py --benchmark office31 --data-root ~/data          # 6 tasks × 4 methods × 3 seeds
    python experiments/office.py --benchmark officehome --data-root ~/data --methods source_only dann
    python experiments/office.py --benchmark office31 --dry-run                     # the runs it would make

Data: ROOT/<benchmark>/… in TLlib's layout (domainadapt/data/benchmarks.py names the expected folders and list
files, and `domainadapt domains` lists the names); `--download` fetches the public archives. The script refuses to
start, naming the missing path, when a domain is absent, before any run.

Recipe (the CDAN / TLlib protocol: Long et al. 2018, NeurIPS, sec. 5; TLlib `examples/domain_adaptation/
image_classification`): ImageNet ResNet-50 (torchvision IMAGENET1K_V1, the weights the published rows used: the
newer V2 weights lift every row and are not comparable), bottleneck fc256 + BatchNorm + ReLU whose output is
aligned, backbone lr × 0.1, SGD lr 0.01 momentum 0.9 weight decay 1e-3, lr annealed as 0.01/(1+10p)^0.75, batch
32 source + 32 target, train crops: resize 256, random resized crop 224, flip; test: resize 256, centre crop 224.
Protocol: the whole unlabelled target domain is the target training set and the target test set (Office, VisDA,
as peers report); DomainNet trains on the official train lists and tests on the official test lists. Model
selection: none, the last step is reported (no target label picks anything).
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

from domainadapt.data import DomainError, load_domain  # noqa: E402
from domainadapt.data.benchmarks import BENCHMARKS  # noqa: E402
from domainadapt.config_flags import METHOD_ARG_HELP, method_args  # noqa: E402
from domainadapt.io import atomic_write_text  # noqa: E402
from domainadapt.models.weights import weights_not_required  # noqa: E402
from domainadapt.report import collect, render, summary_table  # noqa: E402
from domainadapt.runs import check_inputs, run_many, run_name  # noqa: E402
from domainadapt.train import TrainConfig  # noqa: E402

METHODS = ["source_only", "dann", "dan", "coral"]
SHORT = {"amazon": "A", "dslr": "D", "webcam": "W", "Art": "Ar", "Clipart": "Cl", "Product": "Pr", "Real_World": "Rw",
         "synthetic": "Syn", "real": "Real", "clipart": "clp", "infograph": "inf", "painting": "pnt", "quickdraw": "qdr",
         "sketch": "skt"}
RECIPE = dict(backbone="resnet50", backbone_kwargs={"weights": "IMAGENET1K_V1", "bottleneck": 256}, image_size=224,
              optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=1e-3, schedule="dann", batch_size=32,
              lr_mults={"backbone.*": 0.1, "*bottleneck*": 10.0},  # a product: the bottleneck stays at lr × 1
              checkpoint_every=1000, num_workers=4)
STEPS = {"office31": 10_000, "officehome": 10_000, "visda2017": 20_000, "domainnet": 50_000}
# Published rows (ResNet-50), target accuracy %: Long et al. 2018 (CDAN, NeurIPS) Table 1 (Office-31) and Table 2
# (Office-Home), as printed there: ResNet-50 = source only. Method name → {task: accuracy}. The per-task cells were
# typed without the paper at hand; their averages match the paper's (REFERENCES.md: Office-31 76.1 / 80.4 / 82.2 /
# 87.7, Office-Home CDAN+E 65.8), which tests/test_office_experiment.py checks.
_O31 = ["A→W", "D→W", "W→D", "A→D", "D→A", "W→A"]
_OH = ["Ar→Cl", "Ar→Pr", "Ar→Rw", "Cl→Ar", "Cl→Pr", "Cl→Rw", "Pr→Ar", "Pr→Cl", "Pr→Rw", "Rw→Ar", "Rw→Cl", "Rw→Pr"]
PUBLISHED = {
    "office31": {
        "ResNet-50 (CDAN T1)": dict(zip(_O31, [68.4, 96.7, 99.3, 68.9, 62.5, 60.7])),
        "DAN (CDAN T1)": dict(zip(_O31, [80.5, 97.1, 99.6, 78.6, 63.6, 62.8])),
        "DANN (CDAN T1)": dict(zip(_O31, [82.0, 96.9, 99.1, 79.7, 68.2, 67.4])),
        "CDAN+E (CDAN T1)": dict(zip(_O31, [94.1, 98.6, 100.0, 92.9, 71.0, 69.3])),
    },
    "officehome": {
        "ResNet-50 (CDAN T2)": dict(zip(_OH, [34.9, 50.0, 58.0, 37.4, 41.9, 46.2, 38.5, 31.2, 60.4, 53.9, 41.2, 59.9])),
        "DAN (CDAN T2)": dict(zip(_OH, [43.6, 57.0, 67.9, 45.8, 56.5, 60.4, 44.0, 43.6, 67.7, 63.1, 51.5, 74.3])),
        "DANN (CDAN T2)": dict(zip(_OH, [45.6, 59.3, 70.1, 47.0, 58.5, 60.9, 46.1, 43.7, 68.5, 63.2, 51.8, 76.8])),
        "CDAN+E (CDAN T2)": dict(zip(_OH, [50.7, 70.6, 76.0, 57.6, 70.0, 70.0, 57.4, 50.9, 77.3, 70.9, 56.7, 81.6])),
    },
}


def transfer_tasks(benchmark: str, domains: list[str] | None = None) -> list[tuple[str, str]]:
    """Every ordered pair of the benchmark's domains (VisDA: synthetic → real only), as family:domain names."""
    names = domains or list(BENCHMARKS[benchmark].domains)
    if benchmark == "visda2017":
        return [(f"{benchmark}:synthetic", f"{benchmark}:real")]
    return [(f"{benchmark}:{s}", f"{benchmark}:{t}") for s, t in itertools.permutations(names, 2)]


def task_label(source: str, target: str) -> str:
    s, t = source.split(":", 1)[1], target.split(":", 1)[1]
    return f"{SHORT.get(s, s)}→{SHORT.get(t, t)}"


def build_configs(args: argparse.Namespace) -> list[TrainConfig]:
    weights = None if args.weights.lower() == "none" else args.weights
    recipe = {**RECIPE, "steps": args.steps or STEPS[args.benchmark], "num_workers": args.workers,
              "backbone": args.backbone, "image_size": args.image_size,
              "batch_size": args.batch_size,
              "backbone_kwargs": {**RECIPE["backbone_kwargs"], "weights": weights}}
    task_kwargs = {**({"download": True} if args.download else {}),
                   **({"check_counts": False} if args.no_check_counts else {})}
    options = method_args(args.method_arg, args.methods)
    return [TrainConfig(method=m, source=s, target=t, seed=seed, device=args.device, data_root=args.data_root,
                        task_kwargs=task_kwargs, progress=False, method_kwargs=options.get(m, {}), **recipe)
            for s, t in transfer_tasks(args.benchmark, args.domains) for m in args.methods for seed in args.seeds]


def check_data(configs: list[TrainConfig]) -> None:
    """Load every domain's list (no image is decoded): a missing root, list file or image fails here, named."""
    names = sorted({c.source for c in configs} | {c.target for c in configs})
    for name in names:
        load_domain(name, root=configs[0].data_root, image_size=configs[0].image_size,
                    download=bool(configs[0].task_kwargs.get("download", False)),
                    check_counts=bool(configs[0].task_kwargs.get("check_counts", True)))


def table_with_published(frame: pd.DataFrame, benchmark: str, methods: list[str]) -> pd.DataFrame:
    """Rows: our methods, then the published rows; columns: the tasks, then Avg (of the task means)."""
    ours = summary_table(frame, rows=["method"], cols="task", col_order=None)
    ours = ours.reindex([m for m in methods if m in ours.index])
    means = frame.groupby(["method", "task"])["target_test/acc"].mean().unstack("task") * 100
    ours["Avg"] = means.reindex(ours.index).mean(axis=1).map(lambda v: f"{v:.1f}")
    rows = [ours]
    published = PUBLISHED.get(benchmark, {})
    if published:
        pub = pd.DataFrame(published).T.reindex(columns=[c for c in ours.columns if c != "Avg"])
        pub["Avg"] = pub.mean(axis=1)
        rows.append(pub.map(lambda v: "" if pd.isna(v) else f"{v:.1f}"))
    return pd.concat(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmark", required=True, choices=sorted(BENCHMARKS))
    parser.add_argument("--domains", nargs="+", help="a subset of the benchmark's domains (default: all)")
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--method-arg", nargs="+", default=[], metavar="METHOD:KEY=VALUE", help=METHOD_ARG_HELP)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, help="optimizer steps per run (default: " + ", ".join(
        f"{k} {v:,}" for k, v in STEPS.items()) + ")")
    parser.add_argument("--backbone", default=RECIPE["backbone"], help="any image backbone (timm:NAME too)")
    parser.add_argument("--weights", default=RECIPE["backbone_kwargs"]["weights"], help="torchvision weights name, "
                        "or none (random init)")
    parser.add_argument("--image-size", type=int, default=RECIPE["image_size"])
    parser.add_argument("--batch-size", type=int, default=RECIPE["batch_size"], help="per domain")
    parser.add_argument("--data-root", default=os.environ.get("DOMAINADAPT_DATA"),
                        help="folder holding <benchmark>/ (default: $DOMAINADAPT_DATA)")
    parser.add_argument("--download", action="store_true", help="fetch missing archives from the public mirrors")
    parser.add_argument("--no-check-counts", action="store_true",
                        help="accept a partial copy (the image counts are not checked against the benchmark's)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=4, help="DataLoader workers decoding images per run")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel processes (1 on a GPU)")
    parser.add_argument("--dry-run", action="store_true", help="print the runs and stop (no data needed)")
    parser.add_argument("--out", type=Path, default=None, help="default: results/<benchmark>")
    args = parser.parse_args(argv)
    out = args.out or REPO / "results" / args.benchmark
    try:
        if args.domains:
            unknown = sorted(set(args.domains) - set(BENCHMARKS[args.benchmark].domains))
            if unknown:
                raise ValueError(f"--domains: {unknown} are not {args.benchmark} domains "
                                 f"({', '.join(BENCHMARKS[args.benchmark].domains)})")
        configs = build_configs(args)
        with weights_not_required():  # every bad name or value fails here, before the first run
            for config in configs:
                check_inputs(config)
        if args.dry_run:
            for c in configs:
                print(run_name(c))
            print(f"{len(configs)} runs of {configs[0].steps:,} steps")
            return 0
        check_data(configs)
        check_inputs(configs[0])  # then the pretrained weights (one backbone for the whole table): cached or fetchable
    except (ValueError, DomainError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    runs_dir = out / "runs"
    t0 = time.perf_counter()
    run_many([(c, runs_dir / run_name(c)) for c in configs], args.jobs, verbose=True)
    wall = time.perf_counter() - t0
    frame = collect([runs_dir / n for n in sorted({run_name(c) for c in configs})])
    frame["task"] = [task_label(s, t) for s, t in zip(frame["source"], frame["target"])]
    table = table_with_published(frame, args.benchmark, args.methods)
    header = (f"{args.benchmark}: target accuracy (%), mean ± std (n seeds), {configs[0].steps:,} steps, "
              f"{args.backbone} {args.weights} + bottleneck 256, {args.image_size} px, SGD 0.01 (backbone × 0.1), batch {args.batch_size} + {args.batch_size}, last step; published rows "
              f"below ours. Wall time {wall / 3600:.1f} h for {len(configs)} runs.")
    atomic_write_text(out / "table.md", header + "\n\n" + render(table, "markdown") + "\n")
    atomic_write_text(out / "runs.csv", frame.to_csv(index=False))
    print(header)
    print(render(table, "markdown"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
