"""The plug-in point: a method turns one shared step output into named losses.

The trainer runs ONE forward of the concatenated source+target batch and hands the result to the method
(DomainBed keeps each algorithm to one `update`; here the trainer owns the update and a method owns only its
loss terms, so AMP, DDP, accumulation and checkpoints work for every method without the method knowing).
A method is an `nn.Module`, so modules it owns (a domain discriminator, say) are trained, synchronised by DDP
and checkpointed with the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn


@dataclass
class MethodContext:
    """What a method may need to build its modules and schedules."""

    feature_dim: int
    num_classes: int
    total_steps: int


@dataclass
class StepOutput:
    """Everything computed once per step. Target labels are present only for methods that declare
    `uses_target_labels` (the oracle): unsupervised adaptation never sees them."""

    x_s: torch.Tensor | None
    y_s: torch.Tensor | None
    x_t: torch.Tensor | None
    f_s: torch.Tensor | None
    f_t: torch.Tensor | None
    logits_s: torch.Tensor | None
    logits_t: torch.Tensor | None
    progress: float  # 0 → 1 over training (schedules such as DANN's GRL coefficient)
    step: int
    y_t: torch.Tensor | None = None


class Method(nn.Module):
    """Subclass, set `name`, implement `losses`. Register with `@register_method`.

    Class flags tell the trainer what to compute: `uses_source` (forward the source batch) and
    `uses_target` (forward the target batch), `uses_target_labels` (pass y_t: only the oracle).
    The total loss is the plain sum of the returned terms; a method weights its own terms.
    """

    name: ClassVar[str] = ""
    uses_source: ClassVar[bool] = True
    uses_target: ClassVar[bool] = True
    uses_target_labels: ClassVar[bool] = False

    def __init__(self, context: MethodContext) -> None:
        super().__init__()
        self.context = context

    def losses(self, out: StepOutput, model: nn.Module) -> dict[str, torch.Tensor]:
        raise NotImplementedError
