"""Run directories → one pandas DataFrame → mean ± std tables (markdown, LaTeX, CSV)."""

from .collect import collect
from .tables import format_mean_std, gap_closed, render, summary_table

__all__ = ["collect", "format_mean_std", "gap_closed", "render", "summary_table"]
