"""Choosing across runs by a validator (hyper-parameter selection without target labels): each run's chosen
checkpoint (result.json "selected", written by train/selection.py) is a candidate; the one with the highest
score wins. The score compares runs only when they were scored on the same rows: same target domain, same
source domain and split_seed / source_val_fraction (the held-out source rows), which `select_run` checks.

Target accuracy at the chosen step is read from metrics.jsonl for the report only, labelled as such; it plays
no part in the choice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..runs import read_result
from ..train.logging import read_metrics

SAME_ROWS = ("source", "target", "split_seed", "source_val_fraction", "test_fraction")


class SelectError(ValueError):
    """No run can be chosen (none finished, none scored by the validator, or runs scored on different rows)."""


@dataclass(frozen=True)
class Choice:
    run_dir: Path
    step: int
    score: float
    checkpoint: Path
    candidates: int
    target_acc: float | None  # at the chosen step, from metrics.jsonl: reported, never used to choose


def run_dirs(paths: list[Path]) -> list[Path]:
    """Run directories among `paths` (each a run directory or a folder of them, searched recursively)."""
    found: list[Path] = []
    for path in paths:
        if not path.exists():
            raise SelectError(f"no such run directory or folder: {path}")
        found.extend([path] if (path / "result.json").exists() else sorted(p.parent for p in path.rglob("result.json")))
    return found


def metric_at(run_dir: Path, step: int, metric: str = "target_test/acc") -> float | None:
    """`metric` as logged at `step` in the run's metrics.jsonl (None when it was not logged then)."""
    value = None
    for record in read_metrics(run_dir / "metrics.jsonl"):
        if record.get("step") == step and metric in record:
            value = record[metric]  # the last record of that step (the final one at the last step)
    return value


def select_run(paths: list[Path], validator: str) -> Choice:
    """The finished run whose `validator`-chosen checkpoint scores highest (ties: the first in path order)."""
    runs = run_dirs(paths)
    scored: list[tuple[Path, dict[str, Any], dict[str, Any]]] = []
    for run_dir in runs:
        result = read_result(run_dir)
        chosen = (result or {}).get("selected", {}).get(validator)
        if result is not None and chosen is not None and math.isfinite(chosen["score"]):
            scored.append((run_dir, result["config"], chosen))
    if not scored:
        raise SelectError(f"none of the {len(runs)} finished run(s) under {', '.join(map(str, paths))} was scored by "
                          f"validator '{validator}' (set it in the runs' config: validators)")
    for field in SAME_ROWS:
        values = sorted({str(config.get(field)) for _, config, _ in scored})
        if len(values) > 1:
            raise SelectError(f"the runs differ in {field} ({', '.join(values)}): validator scores compare runs "
                              "scored on the same rows only; select within one pair at a time")
    run_dir, _, chosen = max(scored, key=lambda item: item[2]["score"])  # max keeps the first of equal scores
    step = int(chosen["step"])
    return Choice(run_dir=run_dir, step=step, score=float(chosen["score"]),
                  checkpoint=run_dir / "checkpoints" / f"best-{validator}.pt", candidates=len(scored),
                  target_acc=metric_at(run_dir, step))
