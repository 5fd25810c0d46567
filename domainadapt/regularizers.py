"""Penalties that compose with ANY method (DESIGN: "EWC is a regulariser that can be added to any method").

A run names them in `config.regularizers`, e.g. {"ewc": {"lam": 100, "kind": "true", "samples": 1000}} or
{"l2sp": {"alpha": 0.01, "beta": 0.0}}. They are built at the start of a fine-tuning run (`init_from`), where
the model holds the weights of the previous task:
  ewc   anchors the previous weights with the diagonal Fisher on the previous task's data (for image tasks the
        run's *source* training split; for DAPT, general text); anchors of an EWC run we start from are kept (one per task), or, with online=True,
        merged as F ← γF + F_new (Schwarz et al. 2018);
  l2sp  pulls the weights toward the starting point (Li et al. 2018).
Their buffers (anchors, Fishers) live in the run's checkpoint, so resume and later tasks see them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

_OPTIONS = {
    "ewc": {"lam", "kind", "samples", "online", "gamma", "chunk_size"},
    "l2sp": {"alpha", "beta"},
}


def check_regularizers(spec: dict[str, dict[str, Any]]) -> None:
    """Cheap early checks: known names, known options, non-negative strengths."""
    for name, options in spec.items():
        if name not in _OPTIONS:
            raise ValueError(f"unknown regularizer '{name}'; choose from {sorted(_OPTIONS)}")
        unknown = sorted(set(options) - _OPTIONS[name])
        if unknown:
            raise ValueError(f"regularizer '{name}' does not take {unknown}; it takes {sorted(_OPTIONS[name])}")
        for key in ("lam", "alpha", "beta"):
            if key in options and options[key] < 0:
                raise ValueError(f"regularizer '{name}': {key} must be >= 0, got {options[key]}")


def build_regularizers(
    spec: dict[str, dict[str, Any]],
    model: nn.Module,
    *,
    previous: dict[str, Any] | None,
    fisher: Callable[[nn.Module, dict[str, Any]], dict[str, torch.Tensor]],
) -> nn.ModuleDict:
    """Build each named penalty around the model's current (starting) weights. `fisher(model, options)` gives
    the diagonal Fisher on the previous task's data (the task knows its data and its loss)."""
    check_regularizers(spec)
    out = nn.ModuleDict()
    for name, options in spec.items():
        if name == "ewc":
            out[name] = _build_ewc(options, model, previous, fisher)
        else:
            from .methods.l2sp import L2SPPenalty

            reference = {k: v.detach().clone() for k, v in model.named_parameters()}
            out[name] = L2SPPenalty(options.get("alpha", 0.01), options.get("beta", 0.0), reference=reference)
    return out


def _build_ewc(options: dict[str, Any], model: nn.Module, previous: dict[str, Any] | None,
               fisher_of: Callable[[nn.Module, dict[str, Any]], dict[str, torch.Tensor]]) -> nn.Module:
    from .methods.ewc import EWCPenalty

    penalty = EWCPenalty(options.get("lam", 1.0), online=options.get("online", False), gamma=options.get("gamma", 1.0))
    if previous is not None:
        prefix = "regularizers.ewc."
        carried = {k[len(prefix) :]: v for k, v in previous["modules"].items() if k.startswith(prefix)}
        if carried:  # the run we start from was itself EWC-regularised: keep its anchors
            penalty.load_state_dict(carried)
    penalty.add_task(model, fisher_of(model, options))
    return penalty
