"""Learning-rate schedules as multiplicative factors of the base rate, functions of progress p ∈ [0, 1]."""

from __future__ import annotations

import math
from typing import Callable

SCHEDULES = ("constant", "dann", "cosine", "linear")


def dann_annealing(p: float, alpha: float = 10.0, beta: float = 0.75) -> float:
    """μ_p / μ0 = 1 / (1 + α p)^β (Ganin et al. 2016, sec. 5.2.2: α = 10, β = 0.75)."""
    return 1.0 / (1.0 + alpha * p) ** beta


def lr_factor(name: str, total_steps: int, warmup_steps: int = 0, **kwargs: float) -> Callable[[int], float]:
    """Factor for optimizer step `step` (0-based); linear warm-up over `warmup_steps` first."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule '{name}'; choose one of {list(SCHEDULES)}")

    def factor(step: int) -> float:
        p = min(step / max(total_steps, 1), 1.0)
        if name == "constant":
            f = 1.0
        elif name == "dann":
            f = dann_annealing(p, **kwargs)
        elif name == "cosine":
            f = 0.5 * (1.0 + math.cos(math.pi * p))
        else:
            f = 1.0 - p
        if warmup_steps > 0 and step < warmup_steps:
            f *= (step + 1) / warmup_steps
        return f

    return factor
