"""The optimizer updates of one training step, as a method declares them (`Method.update_phases`,
`Method.phase_parameters`): one update of every parameter for most methods, several phases for MCD-like methods,
one restricted update for methods that freeze part of the model (SHOT's hypothesis, all but TENT's norms).

One optimizer holds every parameter; a phase's update drops the gradients of the parameters it does not own
before `optimizer.step()`, and torch's optimizers skip a parameter whose gradient is None entirely (no step, no
weight decay, no change of its moment estimates). So a phase leaves the other parameters, and their optimizer
state, exactly as they were, and one checkpoint format serves every method.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import nn

from ..methods.base import Method


class Batch(NamedTuple):
    """One micro-batch on the device. `scored`: the target labels, for the trainer's online score only."""

    x_s: Any
    y_s: torch.Tensor | None
    x_t: Any
    y_t: torch.Tensor | None
    index_t: torch.Tensor | None
    scored: torch.Tensor | None


@dataclass
class Update:
    """One optimizer update: the phase name (None: a one-update method), how many times the phase occurs in a
    step (its logged losses are averaged over them), and the parameters it may change (None: all)."""

    phase: str | None
    repeats: int = 1
    owned: list[nn.Parameter] | None = None
    others: list[nn.Parameter] = field(default_factory=list)

    def drop_other_gradients(self) -> None:
        for p in self.others:
            p.grad = None


def plan_updates(method: Method, model: nn.Module, optimizer: torch.optim.Optimizer) -> list[Update]:
    """The updates of one step, with each one's parameters resolved against the optimizer's. A phase that
    names a parameter the optimizer does not train (frozen, or foreign) is an error naming the phase."""
    managed = [p for group in optimizer.param_groups for p in group["params"]]
    phases: tuple[str | None, ...] = tuple(method.update_phases()) or (None,)
    if any(not isinstance(p, str) or not p for p in phases if p is not None) or (len(phases) > 1 and None in phases):
        raise ValueError(f"method '{method.name}': update_phases() must return non-empty names, got {phases}")
    repeats = Counter(phases)
    resolved: dict[str | None, Update] = {}
    for phase in repeats:
        chosen = method.phase_parameters(phase, model)
        if chosen is None:
            resolved[phase] = Update(phase, repeats[phase])
            continue
        wanted = {id(p) for p in chosen if p.requires_grad}
        known = {id(p) for p in managed}
        if not wanted:
            raise ValueError(f"method '{method.name}': phase {phase!r} updates no trainable parameter")
        if not wanted <= known:
            raise ValueError(f"method '{method.name}': phase {phase!r} names parameters the optimizer does not hold "
                             "(phase_parameters must return parameters of the model or of the method)")
        resolved[phase] = Update(phase, repeats[phase], owned=[p for p in managed if id(p) in wanted],
                                 others=[p for p in managed if id(p) not in wanted])
    return [resolved[p] for p in phases]
