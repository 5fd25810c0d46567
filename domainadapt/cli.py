"""`domainadapt train | table | domains | methods | measure | reproduce`.

Bad input ends with one line `error: ...` naming the problem and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from .train.config import TrainConfig


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _key_values(items: list[str] | None, flag: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"{flag} expects KEY=VALUE, got '{item}'")
        key, value = item.split("=", 1)
        out[key] = _parse_value(value)
    return out


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one run into an output directory (resumes an unfinished one)")
    d = TrainConfig()
    p.add_argument("--config", type=Path, help="JSON file of TrainConfig fields; flags given override it")
    p.add_argument("--method", help=f"adaptation method (default {d.method}); see `domainadapt methods`")
    p.add_argument("--method-arg", action="append", metavar="KEY=VALUE", help="method option (repeatable)")
    p.add_argument("--source", help=f"source domain (default {d.source}); see `domainadapt domains`")
    p.add_argument("--target", help=f"target domain (default {d.target})")
    p.add_argument("--backbone", help=f"default {d.backbone}")
    p.add_argument("--backbone-arg", action="append", metavar="KEY=VALUE",
                   help="backbone option, e.g. batch_norm=true (repeatable)")
    p.add_argument("--image-size", type=int)
    p.add_argument("--data-root", help="folder with torchvision datasets (full MNIST, USPS, SVHN)")
    p.add_argument("--steps", type=int)
    p.add_argument("--batch-size", type=int, help="per domain, per optimizer step, all processes together")
    p.add_argument("--grad-accum", type=int)
    p.add_argument("--optimizer", choices=["sgd", "adam", "adamw"])
    p.add_argument("--lr", type=float)
    p.add_argument("--momentum", type=float)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--schedule", choices=["constant", "dann", "cosine", "linear"])
    p.add_argument("--warmup-steps", type=int)
    p.add_argument("--grad-clip", type=float)
    p.add_argument("--amp", choices=["none", "bf16", "fp16"])
    p.add_argument("--channels-last", action="store_true", default=None)
    p.add_argument("--seed", type=int)
    p.add_argument("--deterministic", action="store_true", default=None)
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:1, mps")
    p.add_argument("--eval-every", type=int)
    p.add_argument("--checkpoint-every", type=int)
    p.add_argument("--log-every", type=int)
    p.add_argument("--num-workers", type=int, help="DataLoader workers reading batches ahead (default 0)")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None)
    p.add_argument("--out", type=Path, required=True, help="run directory")


def _train(args: argparse.Namespace) -> int:
    from .runs import run

    base: dict[str, Any] = {}
    if args.config is not None:
        if not args.config.is_file():
            raise ValueError(f"config file {args.config} does not exist")
        base = json.loads(args.config.read_text())
        base = base.get("config", base)  # accept a run's config.json too
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    for name in fields:
        value = getattr(args, name, None)
        if value is not None:
            base[name] = value
    if args.method_arg:
        base["method_kwargs"] = {**base.get("method_kwargs", {}), **_key_values(args.method_arg, "--method-arg")}
    if args.backbone_arg:
        base["backbone_kwargs"] = {**base.get("backbone_kwargs", {}), **_key_values(args.backbone_arg, "--backbone-arg")}
    config = TrainConfig.from_dict(base)
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
    from .io import atomic_write_text
    from .report import collect, render, summary_table

    frame = collect(args.runs)
    table = summary_table(frame, metric=args.metric, rows=args.rows.split(","), cols=args.cols, scale=args.scale)
    text = render(table, args.format)
    print(text)
    if args.out is not None:
        atomic_write_text(args.out, text + "\n")
    return 0


def _domains(args: argparse.Namespace) -> int:
    from .data import describe_domains

    for name, text in describe_domains().items():
        print(f"{name:12s} {text}")
    return 0


def _methods(args: argparse.Namespace) -> int:
    from .methods import available_methods, get_method_class

    for name in available_methods():
        doc = (get_method_class(name).__doc__ or sys.modules[get_method_class(name).__module__].__doc__ or "").strip()
        print(f"{name:14s} {doc.splitlines()[0] if doc else ''}")
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
    from .domain_gap import measure_domains, summary_rows
    from .io import atomic_write_json

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="domainadapt", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    _add_table(sub)
    sub.add_parser("domains", help="list the named domains")
    sub.add_parser("methods", help="list the adaptation methods")
    _add_reproduce(sub)
    _add_measure(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {"train": _train, "table": _table, "domains": _domains, "methods": _methods, "reproduce": _reproduce,
                "measure": _measure}
    handler = handlers[args.command]
    try:
        return handler(args)
    except (ValueError, FileNotFoundError, FloatingPointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
