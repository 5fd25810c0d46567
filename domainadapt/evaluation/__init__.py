"""Evaluation: seed statistics (and, in later modules, forgetting and negative-transfer measures)."""

from .stats import mean_std, t_interval

__all__ = ["mean_std", "t_interval"]
