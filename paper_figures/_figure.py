"""What every figure script shares: refuse to draw without results, headless matplotlib, PNG + PDF output."""

from __future__ import annotations

import sys
from pathlib import Path


def results_missing(path: Path, producer: str) -> bool:
    """True (after one `error:` line) when the results a figure reads are absent."""
    if path.is_file():
        return False
    print(f"error: no results at {path}; run {producer} first", file=sys.stderr)
    return True


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # figures are files; no display needed
    import matplotlib.pyplot as plt

    return plt


def save(fig, out: Path, name: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for ext in ("png", "pdf"):
        fig.savefig(out / f"{name}.{ext}", dpi=150)
    print(f"wrote {out / (name + '.png')} and .pdf")
