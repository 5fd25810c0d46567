"""Read every finished run (a directory with result.json) under the given paths into one DataFrame."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pandas as pd


def _result_files(paths: Iterable[str | Path]) -> list[Path]:
    files: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise FileNotFoundError(f"no such run directory or folder: {p}")
        if p.is_file() and p.name == "result.json":
            files.append(p)
        elif (p / "result.json").is_file():
            files.append(p / "result.json")
        else:
            files.extend(sorted(p.rglob("result.json")))
    return files


def collect(paths: Iterable[str | Path]) -> pd.DataFrame:
    """One row per finished run: config fields as columns, then metrics (e.g. 'target_test/acc'), then
    run_dir, steps, train_seconds, and `health`: the training health codes that fired (train/health.py),
    comma-joined, "" when none did (or the run was not checked: on_unhealthy="off", or older result files).
    Unfinished runs (no result.json) are not rows."""
    rows = []
    for f in _result_files(paths):
        result = json.loads(f.read_text())
        row = {k: (json.dumps(v, sort_keys=True) if isinstance(v, dict) else v) for k, v in result["config"].items()}
        row.update(result["metrics"])
        row.update(run_dir=str(f.parent), steps_done=result["steps"], train_seconds=result["train_seconds"],
                   config_hash=result["config_hash"], health=",".join(result.get("health") or []))
        rows.append(row)
    if not rows:
        raise FileNotFoundError(f"no finished runs (result.json) under {[str(p) for p in paths]}")
    return pd.DataFrame(rows)
