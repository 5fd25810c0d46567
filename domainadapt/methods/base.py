"""The plug-in point: a method turns one shared step output into named losses.

The trainer runs ONE forward of the concatenated source+target batch and hands the result to the method
(DomainBed keeps each algorithm to one `update`; here the trainer owns the update and a method owns only its
loss terms, so AMP, DDP, accumulation and checkpoints work for every method without the method knowing).
A method is an `nn.Module`, so modules it owns (a domain discriminator, say) are trained, synchronised by DDP
and checkpointed with the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ..inference import batch_length


@dataclass
class MethodContext:
    """What a method may need to build its modules and schedules."""

    feature_dim: int
    num_classes: int
    total_steps: int
    micro_steps: int = 1  # forwards per optimizer step in each process (gradient accumulation)


@dataclass
class StepOutput:
    """Everything computed once per step. Target labels are present only for methods that declare
    `uses_target_labels` (the oracle): unsupervised adaptation never sees them."""

    x_s: Any  # a tensor (images) or a dict of tensors (tokenised text)
    y_s: torch.Tensor | None
    x_t: Any
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
    The total loss is the plain sum of the returned terms; a method weights its own terms. Diagnostics that are
    not trained (a GRL coefficient, a discriminator's accuracy) go through `self.report(name, value)`.
    """

    name: ClassVar[str] = ""
    uses_source: ClassVar[bool] = True
    uses_target: ClassVar[bool] = True
    uses_target_labels: ClassVar[bool] = False
    # Bump when a change of the method's code or defaults changes what a run computes: the revision is part of
    # the run key (TrainConfig.key_dict), so a stored result of the old behaviour is never read as the new one.
    revision: ClassVar[int] = 0

    def __init__(self, context: MethodContext) -> None:
        super().__init__()
        self.context = context
        self._reports: dict[str, tuple[Any, int]] = {}

    def report(self, name: str, value: float | torch.Tensor) -> None:
        """Log `value` (a float or a 0-d tensor; detached here, never trained) as `method/<name>` in metrics.jsonl,
        averaged over the log interval like the losses. Call it from `losses` (or `compute_losses`); a tensor stays
        on its device until the log step (no host sync per step). Several calls with one name in a forward are
        averaged too."""
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                raise ValueError(f"method '{self.name}': report('{name}') takes a float or a 0-d tensor, "
                                 f"got a tensor of shape {tuple(value.shape)}")
            value = value.detach().float().reshape(())
        else:
            value = float(value)
        reports = self.__dict__.setdefault("_reports", {})  # a subclass that skipped Method.__init__ still reports
        total, count = reports.get(name, (0.0, 0))
        reports[name] = (total + value, count + 1)

    def take_reports(self) -> dict[str, tuple[Any, int]]:
        """The (sum, count) of each name reported since the last call, and forget them (the trainer calls it after
        every forward)."""
        reports = self.__dict__.get("_reports") or {}
        self.__dict__["_reports"] = {}
        return reports

    def losses(self, out: StepOutput, model: nn.Module) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def compute_losses(
        self,
        model: nn.Module,
        x_s: Any,
        y_s: torch.Tensor | None,
        x_t: Any,
        y_t: torch.Tensor | None,
        progress: float,
        step: int,
    ) -> dict[str, torch.Tensor]:
        """The step's forward: ONE pass of the concatenated source+target batch through
        `model.features_and_logits`, then `losses`. A method whose objective is not a classifier's (the masked-LM
        objective of DAPT) overrides this instead of `losses`; inputs may then be dicts of tensors."""
        parts = [x for x in (x_s, x_t) if x is not None]
        x = concat_inputs(parts) if len(parts) > 1 else parts[0]
        f, logits = model.features_and_logits(x)
        n_s = 0 if x_s is None else batch_length(x_s)
        out = StepOutput(
            x_s=x_s,
            y_s=y_s,
            x_t=x_t,
            f_s=f[:n_s] if x_s is not None else None,
            f_t=f[n_s:] if x_t is not None else None,
            logits_s=logits[:n_s] if x_s is not None else None,
            logits_t=logits[n_s:] if x_t is not None else None,
            progress=progress,
            step=step,
            y_t=y_t,
        )
        self.last_target_logits = None if out.logits_t is None else out.logits_t.detach()  # for train/health.py
        return self.losses(out, model)


def concat_inputs(parts: list[Any]) -> Any:
    """Concatenate batches along rows; dicts of token tensors are right-padded to a common length first
    (padding value 0 = [PAD] for input ids and "not attended" for attention masks)."""
    if not isinstance(parts[0], Mapping):
        return torch.cat(parts)
    out = {}
    for key in parts[0]:
        tensors = [p[key] for p in parts]
        width = max(t.shape[1] for t in tensors) if tensors[0].dim() > 1 else None
        if width is not None:
            tensors = [nn.functional.pad(t, (0, width - t.shape[1])) for t in tensors]
        out[key] = torch.cat(tensors)
    return out
