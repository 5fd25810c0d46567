"""`domainadapt train | table | measure | shards | reproduce | domains | methods | tasks | regularizers | backbones`.

Bad input ends with one line `error: ...` naming the problem and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import types
import typing
from pathlib import Path
from typing import Any

import torch

from .data import describe_domains, load_file_parts, write_shards
from .domain_gap import measure_domains, summary_rows
from .io import atomic_write_json, atomic_write_text
from .methods import available_methods, get_method_class
from .models import available_backbones, get_backbone
from .plugins import PluginError, add_plugins
from .regularizers import available_regularizers, get_regularizer
from .report import collect, render, summary_table
from .runs import run
from .tasks import available_tasks, get_task
from .train.config import TrainConfig
from .train.health import UnhealthyRunError


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


def _flag_type(hint: Any) -> type | None:
    """The argparse type of a config field's annotation: int, float or str, or one of them | None."""
    args = [a for a in typing.get_args(hint) if a is not type(None)] if typing.get_origin(hint) in (
        typing.Union, types.UnionType) else [hint]
    return args[0] if len(args) == 1 and args[0] in (int, float, str) else None


def config_flags() -> list[tuple[dataclasses.Field, str, dict[str, Any]]]:
    """(field, flag, argparse options) for every TrainConfig field: `--field-name`; booleans as `--name` (default
    off) or `--no-name` (default on); dicts of options as repeatable `--method-arg KEY=VALUE` (for `*_kwargs`)
    or one JSON object; lists as several values. Help is the field's doc; choices are the config's own."""
    hints = typing.get_type_hints(TrainConfig)
    defaults = TrainConfig().to_dict()
    out = []
    for f in dataclasses.fields(TrainConfig):
        hint, doc, default = hints[f.name], f.metadata.get("doc", ""), defaults[f.name]
        origin = typing.get_origin(hint) or hint
        name = f.name.replace("_", "-")
        if origin is dict:
            if f.name.endswith("_kwargs"):
                flag = f"--{f.name[: -len('_kwargs')].replace('_', '-')}-arg"
                opts = dict(action="append", metavar="KEY=VALUE", dest=f.name, help=f"{doc} (repeatable)")
            else:
                flag, opts = f"--{name}", dict(type=json.loads, metavar="JSON", dest=f.name, help=f"{doc} (a JSON object)")
        elif origin is list:
            flag, opts = f"--{name}", dict(nargs="+", dest=f.name, help=doc)
        elif hint is bool:
            flag = f"--no-{name}" if default else f"--{name}"
            opts = dict(action="store_false" if default else "store_true", default=None, dest=f.name, help=doc)
        else:
            opts = dict(type=_flag_type(hint), dest=f.name, help=f"{doc} (default {default})")
            if f.metadata.get("choices"):
                opts["choices"] = list(f.metadata["choices"])
            flag = f"--{name}"
        out.append((f, flag, opts))
    return out


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one run into an output directory (resumes an unfinished one)")
    p.add_argument("--config", type=Path, help="JSON file of TrainConfig fields; flags given override it")
    for _, flag, opts in config_flags():
        p.add_argument(flag, **opts)
    p.add_argument("--out", type=Path, required=True, help="run directory")


def _train(args: argparse.Namespace) -> int:
    base: dict[str, Any] = {}
    if args.config is not None:
        if not args.config.is_file():
            raise ValueError(f"config file {args.config} does not exist")
        try:
            base = json.loads(args.config.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"config file {args.config} is not valid JSON ({err})") from None
        if isinstance(base, dict) and isinstance(base.get("config"), dict):
            base = base["config"]  # accept a run's config.json too
        if not isinstance(base, dict):
            raise ValueError(f"config file {args.config} must hold a JSON object of TrainConfig fields, "
                             f"not a {type(base).__name__}")
    for f, flag, opts in config_flags():
        value = getattr(args, f.name, None)
        if value is None:
            continue
        if opts.get("action") == "append":  # KEY=VALUE items merge into the config file's options
            base[f.name] = {**base.get(f.name, {}), **_key_values(value, flag)}
        else:
            base[f.name] = value
    config = TrainConfig.from_dict(base)
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
    sub.add_parser("backbones", help="list the backbones")
    _add_reproduce(sub)
    _add_measure(sub)
    _add_shards(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {"train": _train, "table": _table, "domains": _domains, "methods": _methods, "reproduce": _reproduce,
                "measure": _measure, "shards": _shards, "tasks": _tasks, "regularizers": _regularizers, "backbones": _backbones}
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
