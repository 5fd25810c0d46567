"""`domainadapt train | table | select | measure | shards | export | predict | reproduce | domains | methods | tasks |
regularizers | validators | backbones`.

Bad input ends with one line `error: ...` naming the problem and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from .config_flags import add_train_arguments, train_config
from .data import describe_domains, load_file_parts, write_shards
from .deploy import EXPORT_FORMATS, export_run, predict_run
from .domain_gap import measure_domains, summary_rows
from .io import atomic_write_json, atomic_write_text
from .methods import available_methods, get_method_class
from .models import available_backbones, get_backbone
from .plugins import PluginError, add_plugins
from .regularizers import available_regularizers, get_regularizer
from .report import collect, render, summary_table
from .report.selection import select_run
from .runs import run
from .tasks import available_tasks, get_task
from .train.health import UnhealthyRunError
from .validators import available_validators, get_validator_class


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one run into an output directory (resumes an unfinished one)")
    add_train_arguments(p)
    p.add_argument("--out", type=Path, required=True, help="run directory")


def _train(args: argparse.Namespace) -> int:
    config = train_config(args)
    threads = os.environ.get("DOMAINADAPT_THREADS")
    if threads:
        if not threads.isdigit() or int(threads) < 1:
            raise ValueError(f"DOMAINADAPT_THREADS must be a positive integer, got '{threads}'")
        torch.set_num_threads(int(threads))
    result = run(config, args.out)
    print(json.dumps({"run_dir": str(args.out), "metrics": result["metrics"]}, indent=2))
    return 0


def _add_table(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("table", help="collect run directories into a mean ± std table")
    p.add_argument("runs", nargs="+", type=Path, help="run directories or folders containing them")
    p.add_argument("--metric", default="target_test/acc")
    p.add_argument("--rows", default="source,target", help="config fields that index rows")
    p.add_argument("--cols", default="method", help="config field that indexes columns")
    p.add_argument("--format", choices=["markdown", "latex", "csv"], default="markdown")
    p.add_argument("--scale", type=float, default=100.0, help="multiply values (100: accuracy in %%)")
    p.add_argument("--out", type=Path, help="also write the table here")


def _table(args: argparse.Namespace) -> int:
    frame = collect(args.runs)
    table = summary_table(frame, metric=args.metric, rows=args.rows.split(","), cols=args.cols, scale=args.scale)
    text = render(table, args.format)
    print(text)
    if args.out is not None:
        atomic_write_text(args.out, text + "\n")
    return 0


def _domains(args: argparse.Namespace) -> int:
    for name, text in describe_domains().items():
        print(f"{name:12s} {text}")
    return 0


def _methods(args: argparse.Namespace) -> int:
    for name in available_methods():
        doc = (get_method_class(name).__doc__ or sys.modules[get_method_class(name).__module__].__doc__ or "").strip()
        print(f"{name:14s} {doc.splitlines()[0] if doc else ''}")
    return 0


def _first_doc_line(obj: Any) -> str:
    doc = (getattr(obj, "__doc__", None) or sys.modules[type(obj).__module__].__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""


def _tasks(args: argparse.Namespace) -> int:
    for name in available_tasks():
        print(f"{name:22s} {_first_doc_line(get_task(name))}")
    return 0


def _regularizers(args: argparse.Namespace) -> int:
    for name in available_regularizers():
        print(f"{name:10s} {_first_doc_line(get_regularizer(name))}")
    return 0


def _validators(args: argparse.Namespace) -> int:
    for name in available_validators():
        cls = get_validator_class(name)
        print(f"{name:12s} reads {', '.join(sorted(cls.needs)):60s} {_first_doc_line(cls)}")
    return 0


def _add_select(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("select", help="choose across runs by a validator's score (no target labels)")
    p.add_argument("runs", nargs="+", type=Path, help="run directories or folders containing them")
    p.add_argument("--validator", required=True, help="a validator the runs were configured with (config validators)")


def _select(args: argparse.Namespace) -> int:
    choice = select_run(args.runs, args.validator)
    print(f"chosen by {args.validator} among {choice.candidates} runs: {choice.run_dir} at step {choice.step} "
          f"(score {choice.score:.6g})")
    print(f"checkpoint: {choice.checkpoint}")
    if choice.target_acc is not None:
        print(f"target test accuracy at that step: {100 * choice.target_acc:.2f}% (read after choosing, not used to choose)")
    return 0


def _backbones(args: argparse.Namespace) -> int:
    for name in available_backbones():
        spec = get_backbone(name)
        print(f"{name:12s} {spec.modality:6s} {spec.doc}")
    print("(a text task also takes any Hugging Face folder or hub name)")
    return 0


def _add_reproduce(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reproduce", help="run an experiment script from experiments/ (e.g. digits)")
    p.add_argument("experiment", nargs="?", default="digits")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="arguments passed to the script (e.g. --quick)")


def _reproduce(args: argparse.Namespace) -> int:
    script = Path("experiments") / f"{args.experiment}.py"
    if not script.is_file():
        raise ValueError(f"no experiment script {script} (run from the repository root)")
    return subprocess.call([sys.executable, str(script), *args.rest])


def _add_measure(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("measure", help="measure the gap between two domains (MMD, Fréchet distance, KID, proxy A-distance)")
    p.add_argument("--source", required=True)
    p.add_argument("--target", required=True)
    p.add_argument("--features", default="pixels", help="pixels | inception | CHECKPOINT:LAYER (a run dir or .pt)")
    p.add_argument("--metrics", default="mmd,fd,kid,a_distance", help="comma-separated: mmd, fd, kid, a_distance")
    p.add_argument("--n", type=int, default=1000, help="images per domain (both subsampled to the same n)")
    p.add_argument("--permutations", type=int, default=1000, help="permutations of the MMD test")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--data-root")
    p.add_argument("--device", default="cpu")
    p.add_argument("--fid-weights", help="pt_inception-2015-12-05-6726825d.pth (for --features inception)")
    p.add_argument("--allow-download", action="store_true", help="fetch the FID weights when online")
    p.add_argument("--out", type=Path, help="write the full result as JSON")


def _measure(args: argparse.Namespace) -> int:

    result = measure_domains(
        args.source, args.target, features=args.features, metrics=[m.strip() for m in args.metrics.split(",") if m.strip()],
        n=args.n, seed=args.seed, n_permutations=args.permutations, image_size=args.image_size,
        data_root=args.data_root, device=args.device, fid_weights=args.fid_weights, allow_download=args.allow_download,
    )
    import pandas as pd

    print(f"{args.source} vs {args.target}, features {args.features}, n = {result['n_source']} per domain")
    print(pd.DataFrame(summary_rows(result)).set_index("metric").to_markdown())
    if args.out is not None:
        atomic_write_json(args.out, result)
    return 0


def _add_shards(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("shards", help="pack a file-backed domain (folder, image list, benchmark) into WebDataset shards")
    p.add_argument("source", help="lazy_folder:PATH, list:PATH or a benchmark domain such as domainnet:clipart")
    p.add_argument("out", type=Path, help="a new folder; train with --source shards:OUT")
    p.add_argument("--data-root", help="the benchmarks' root folder (for office31:… and the like)")
    p.add_argument("--max-count", type=int, default=100_000, help="examples per shard at most")
    p.add_argument("--max-gb", type=float, default=3.0, help="bytes per shard at most, in GB")
    p.add_argument("--no-check-counts", action="store_true", help="accept a benchmark folder of unexpected size")


def _shards(args: argparse.Namespace) -> int:
    parts = load_file_parts(args.source, root=args.data_root, check_counts=not args.no_check_counts)
    out = write_shards(parts, args.out, max_count=args.max_count, max_bytes=args.max_gb * 1e9)
    counts = ", ".join(f"{part} {len(domain)}" for part, domain in parts.items())
    print(f"wrote {out} ({counts} images); use it as shards:{out}")
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a finished run's model (onnx, torchscript, safetensors, hf) with a model card")
    p.add_argument("run", type=Path, help="a finished run directory")
    p.add_argument("--format", required=True, choices=EXPORT_FORMATS)
    p.add_argument("--out", required=True, type=Path, help="a new folder for the model and its card")
    p.add_argument("--atol", type=float, default=1e-4, help="largest |Δ logit| against PyTorch the check accepts")


def _export(args: argparse.Namespace) -> int:
    card = export_run(args.run, args.format, args.out, atol=args.atol)
    check = card["check"]
    print(f"wrote {args.out} ({check['file']}); {check['checked_with']}: max |Δ logit| = "
          f"{check['max_abs_logit_diff']:.2g} on {check['inputs']} inputs; card: {args.out / 'MODEL_CARD.md'}")
    return 0


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="predict with a finished run on a folder or file of images or texts -> CSV")
    p.add_argument("run", type=Path, help="a finished run directory")
    p.add_argument("--input", required=True, type=Path, help="images: a folder, an image or a list file; "
                   "texts: .txt (one per line), .csv or .jsonl")
    p.add_argument("--out", type=Path, default=Path("predictions.csv"))
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--text-column", default="text", help="the text column of a .csv / .jsonl input")
    p.add_argument("--no-progress", action="store_true")


def _predict(args: argparse.Namespace) -> int:
    frame = predict_run(args.run, args.input, args.out, batch_size=args.batch_size, device=args.device,
                        text_column=args.text_column, progress=not args.no_progress)
    print(f"wrote {args.out}: {len(frame)} predictions; {frame['prediction'].value_counts().to_dict()}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="domainadapt", description=__doc__)
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE_OR_FILE",
                        help="import a module that registers methods, tasks, regularizers or backbones (repeatable; "
                        "also DOMAINADAPT_PLUGINS)")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    _add_table(sub)
    sub.add_parser("domains", help="list the named domains")
    sub.add_parser("methods", help="list the adaptation methods")
    sub.add_parser("tasks", help="list the tasks")
    sub.add_parser("regularizers", help="list the regularizers")
    sub.add_parser("validators", help="list the label-free validators (model selection)")
    _add_select(sub)
    sub.add_parser("backbones", help="list the backbones")
    _add_reproduce(sub)
    _add_measure(sub)
    _add_shards(sub)
    _add_export(sub)
    _add_predict(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {"train": _train, "table": _table, "domains": _domains, "methods": _methods, "reproduce": _reproduce,
                "measure": _measure, "shards": _shards, "export": _export, "predict": _predict, "tasks": _tasks, "regularizers": _regularizers, "backbones": _backbones,
                "validators": _validators, "select": _select}
    handler = handlers[args.command]
    try:
        add_plugins(args.plugin)
        return handler(args)
    except EXPECTED_FAILURES as err:
        if int(os.environ.get("RANK", "0")) == 0:  # under torchrun one line, from rank 0
            print(f"error: {str(err) or type(err).__name__}", file=sys.stderr)
        return 2


# bad values, missing files, a run that diverged or was stopped unhealthy (on_unhealthy=stop), OS errors
# (permissions, a full or read-only disk, the network)
EXPECTED_FAILURES = (ValueError, FloatingPointError, PluginError, OSError, ImportError, UnhealthyRunError)


if __name__ == "__main__":
    raise SystemExit(main())
