"""Mean ± std over seeds, pivoted into the tables papers print."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..train.config import TrainConfig


WARNED = " ⚠"  # the mark of a cell whose runs include one a training health check warned about


def format_mean_std(mean: float, std: float, n: int, digits: int = 1) -> str:
    std_text = "–" if np.isnan(std) else f"{std:.{digits}f}"
    return f"{mean:.{digits}f} ± {std_text} ({n})"


def summary_table(
    frame: pd.DataFrame,
    metric: str = "target_test/acc",
    rows: Sequence[str] = ("source", "target"),
    cols: str = "method",
    scale: float = 100.0,
    digits: int = 1,
    col_order: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Cells 'mean ± std (n)' of `metric × scale` over the runs sharing (rows, cols); std is over seeds (ddof=1).
    A cell one of whose runs warned (a training health code fired; collect's `health` column) ends with " ⚠".

    Runs that differ in anything but the seed must not share a cell: such a group raises, naming the field."""
    missing = [c for c in [metric, *rows, cols] if c not in frame.columns]
    if missing:
        raise KeyError(f"columns {missing} not in the collected runs; have {sorted(frame.columns)}")
    _check_only_seeds_differ(frame, [*rows, cols], metric)
    grouped = frame.groupby([*rows, cols], sort=False)[metric]
    stats = grouped.agg(mean="mean", std=lambda s: s.std(ddof=1), n="count")
    cells = stats.apply(lambda r: format_mean_std(r["mean"] * scale, r["std"] * scale, int(r["n"]), digits), axis=1)
    if "health" in frame.columns:
        warned = frame.groupby([*rows, cols], sort=False)["health"].agg(
            lambda s: any(isinstance(v, str) and v != "" for v in s))
        cells = cells.where(~warned.reindex(cells.index, fill_value=False), cells + WARNED)
    table = cells.unstack(cols)
    order = list(col_order) if col_order is not None else list(dict.fromkeys(frame[cols]))
    table = table[[c for c in order if c in table.columns]]
    table.columns.name = None
    return table


def _check_only_seeds_differ(frame: pd.DataFrame, keys: list[str], metric: str) -> None:
    ignore = (set(keys) | {"seed", "run_dir", "steps_done", "train_seconds", "config_hash", "health"}
              | TrainConfig.execution_fields())
    config_cols = [c for c in frame.columns if c not in ignore and "/" not in c]
    for key, group in frame.groupby(keys, sort=False):
        for c in config_cols:
            if group[c].astype(str).nunique() > 1:
                raise ValueError(f"runs of cell {key} differ in '{c}' ({sorted(group[c].astype(str).unique())}), not only in seed")


def render(table: pd.DataFrame, fmt: str = "markdown") -> str:
    if fmt == "markdown":
        return table.to_markdown()
    if fmt == "latex":  # the warning mark as a dagger: pdflatex has no glyph for ⚠
        marked = table.map(lambda v: v.replace(WARNED, r" $\dagger$") if isinstance(v, str) else v)
        return marked.style.to_latex(hrules=True)
    if fmt == "csv":
        return table.to_csv()
    raise ValueError(f"unknown table format '{fmt}'; choose markdown, latex or csv")


def gap_closed(
    frame: pd.DataFrame,
    metric: str = "target_test/acc",
    rows: Sequence[str] = ("source", "target"),
    cols: str = "method",
    lower: str = "source_only",
    upper: str = "target_oracle",
) -> pd.DataFrame:
    """(mean(method) − mean(lower)) / (mean(upper) − mean(lower)) per row, for every method but the two bounds:
    the share of the source-only → oracle gap a method closes (1 = as good as training on target labels)."""
    means = frame.groupby([*rows, cols], sort=False)[metric].mean().unstack(cols)
    for bound in (lower, upper):
        if bound not in means.columns:
            raise KeyError(f"gap closed needs '{bound}' runs; have {sorted(means.columns)}")
    span = means[upper] - means[lower]
    methods = [c for c in dict.fromkeys(frame[cols]) if c not in (lower, upper)]
    out = means[methods].sub(means[lower], axis=0).div(span, axis=0)
    out.columns.name = None
    return out
