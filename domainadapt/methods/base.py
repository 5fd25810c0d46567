"""The plug-in point: a method turns one shared step output into named losses.

The trainer runs ONE forward of the concatenated source+target batch and hands the result to the method
(DomainBed keeps each algorithm to one `update`; here the trainer owns the update and a method owns only its
loss terms, so AMP, DDP, accumulation and checkpoints work for every method without the method knowing).
A method is an `nn.Module`, so modules it owns (a domain discriminator, say) are trained, synchronised by DDP
and checkpointed with the model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from ..data.unlabelled import UnlabelledInputs
from ..inference import batch_length, features_and_logits, to_device


@dataclass
class MethodContext:
    """What a method may need to build its modules and schedules."""

    feature_dim: int
    num_classes: int
    total_steps: int
    micro_steps: int = 1  # forwards per optimizer step in each process (gradient accumulation)
    # a freshly initialised copy of the model's head (MCD's second classifier), None for a model without `head`
    new_head: Callable[[], nn.Module] | None = field(default=None, repr=False)


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
    phase: str | None = None  # the update phase this forward is for (`Method.update_phases`), None for one update
    index_t: torch.Tensor | None = None  # the target rows' dataset indices, for methods with `uses_target_index`


@dataclass
class TargetPass:
    """What a method's periodic work (`Method.refresh`) reads: the target TRAINING set's inputs, never a label
    (`UnlabelledInputs` has none to give), in index order, moved to the run's device."""

    target: UnlabelledInputs | None
    step: int
    device: torch.device
    batch_size: int = 256
    autocast_dtype: torch.dtype | None = None

    def __len__(self) -> int:
        return 0 if self.target is None else len(self.target)

    def batches(self) -> Iterator[tuple[torch.Tensor, Any]]:
        """(dataset row indices, inputs on the device) over the whole target training set."""
        if self.target is None:
            raise RuntimeError("this run has no target training set to refresh from")
        for start in range(0, len(self.target), self.batch_size):
            index = torch.arange(start, min(start + self.batch_size, len(self.target)))
            yield index, to_device(self.target.inputs(index), self.device)

    def features_and_logits(self, model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's features and logits (float32) for every target training row, in index order (call it under
        the eval mode the method wants; the trainer runs `refresh` under no_grad)."""
        return features_and_logits(model, (x for _, x in self.batches()), device=self.device,
                                   autocast_dtype=self.autocast_dtype)


class Method(nn.Module):
    """Subclass, set `name`, implement `losses`. Register with `@register_method`.

    Class flags tell the trainer what to compute: `uses_source` (forward the source batch) and
    `uses_target` (forward the target batch), `uses_target_labels` (pass y_t: only the oracle),
    `uses_target_index` (pass the target rows' dataset indices as `out.index_t`), `trains` (False: no optimizer
    step at all, only `refresh` at step 0: AdaBN), `online_accuracy` (the trainer scores each target batch's
    predictions, made in the training forward *before* the update on that batch, against the target stream's
    labels, which the method never sees: `target_online/acc`, the test-time protocol of TENT).
    The total loss is the plain sum of the returned terms; a method weights its own terms. Diagnostics that are
    not trained (a GRL coefficient, a discriminator's accuracy) go through `self.report(name, value)`.

    Beyond one forward and one update per step, two general hooks (the trainer knows no method by name):
    - `update_phases()` names several optimizer updates per step, in order, on the same batches (MCD's three);
      `phase_parameters(phase, model)` says which parameters each one updates (None: all), and `out.phase`
      tells `losses` which phase it computes. A one-update method can still restrict what it trains through
      `phase_parameters(None, model)` (SHOT freezes the source hypothesis, TENT trains only normalisation).
    - `refresh_every` > 0 calls `refresh(model, target_pass)` before the update of every step s with
      s % refresh_every == 0 (s = 0 first), under no_grad, with the whole unlabelled target training set at hand
      (SHOT's pseudo-labels). Keep what it computes in buffers, so checkpoints hold it and resume stays exact.
    """

    name: ClassVar[str] = ""
    uses_source: ClassVar[bool] = True
    uses_target: ClassVar[bool] = True
    uses_target_labels: ClassVar[bool] = False
    uses_target_index: ClassVar[bool] = False
    trains: ClassVar[bool] = True
    online_accuracy: ClassVar[bool] = False
    # source-free and test-time methods adapt a trained model: a run without `init_from` is refused before it starts
    needs_trained_model: ClassVar[bool] = False
    refresh_every: int = 0  # an instance attribute: a method may set it from an option
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

    def update_phases(self) -> tuple[str, ...]:
        """The optimizer updates of one step, in order (a name may repeat); () = one update with every loss."""
        return ()

    def phase_parameters(self, phase: str | None, model: nn.Module) -> list[nn.Parameter] | None:
        """The parameters (of `model` or of this method) that update `phase` changes; None = every trainable one.
        Called once, when the trainer is built; the others' gradients are dropped before that phase's step."""
        return None

    def refresh(self, model: nn.Module, target: TargetPass) -> None:
        """Periodic work over the unlabelled target training set (see the class docstring)."""

    def compute_losses(
        self,
        model: nn.Module,
        x_s: Any,
        y_s: torch.Tensor | None,
        x_t: Any,
        y_t: torch.Tensor | None,
        progress: float,
        step: int,
        *,
        phase: str | None = None,
        index_t: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """The step's forward: ONE pass of the concatenated source+target batch through
        `model.features_and_logits`, then `losses`. A method whose objective is not a classifier's (the masked-LM
        objective of DAPT) overrides this instead of `losses`; inputs may then be dicts of tensors. `phase` and
        `index_t` are passed only to methods with update phases / `uses_target_index`."""
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
            phase=phase,
            index_t=index_t,
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
