"""Label-free checkpoint selection inside a run: the configured validators (domainadapt/validators) score the
model at every evaluation point, and each keeps the checkpoint it scores best (`checkpoints/best-<name>.pt`).

What a validator can read is built here, and only from what unsupervised adaptation has: the target TRAINING
inputs (`UnlabelledInputs`, which has no labels to give) and labelled source rows held out of source training
(`source_holdout`). The validators receive a `ValidationInputs`, which has no field for target labels.

Only the fields the configured validators declare (`Validator.needs`) are computed. Under DDP every process
computes the same scores on the whole sets (the weights are synchronised), and only rank 0 writes files.
The best score and step of each validator are part of the trainer's checkpoint, so a resumed run re-chooses the
same checkpoint: a kill between writing best-<name>.pt and last.pt replays that evaluation, which scores the
same and rewrites the same file.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from ..data.streams import fetch_batch
from ..data.unlabelled import UnlabelledInputs
from ..inference import eval_mode, features_and_logits
from ..validators import ValidationInputs, Validator, build_validator
from .checkpoint import save_checkpoint

SOURCE_FIELDS = frozenset({"source_logits", "source_features", "source_labels", "source_train_features"})
TARGET_FIELDS = frozenset({"target_logits", "target_features"})


class SelectionError(ValueError):
    """Validators configured in a way this run cannot serve; the message names the validator or field."""


def build_validators(spec: dict[str, dict[str, Any]]) -> dict[str, Validator]:
    """{name: options} -> {name: Validator} (an unknown name or option is one error naming it)."""
    return {name: build_validator(name, **dict(options or {})) for name, options in spec.items()}


def validators_need_source(spec: dict[str, dict[str, Any]]) -> bool:
    """Whether any configured validator reads source rows (so the run holds some out of source training)."""
    return any(v.needs & SOURCE_FIELDS for v in build_validators(spec).values())


def source_holdout(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(training rows, validation rows) of a source training set of n rows: a seeded draw of round(fraction·n)
    rows for validation, disjoint from the rest; both sorted. The seed is the run's split_seed, so every training
    seed of a grid is scored on the same held-out rows (hyper-parameter selection compares like with like)."""
    k = round(fraction * n)
    if not 0 < k < n:
        raise SelectionError(f"source_val_fraction {fraction} of {n} source training rows leaves {k} for validation "
                             f"and {n - k} for training; both must be at least 1")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[k:].sort().values, perm[:k].sort().values


@dataclass
class SelectionData:
    """The rows validators are computed on: target training inputs (no labels), held-out labelled source rows,
    and source training inputs (DEV's domain classifier), any of which may be absent."""

    target: UnlabelledInputs | None = None
    source_val: Dataset | None = None
    source_train: UnlabelledInputs | None = None


class CheckpointSelector:
    """Scores the model with each validator and keeps each one's best checkpoint (ties keep the earlier step)."""

    def __init__(self, validators: dict[str, Validator], data: SelectionData, *, run_dir: str | Path,
                 device: torch.device, batch_size: int = 500, autocast_dtype: torch.dtype | None = None,
                 max_source_train: int = 1000) -> None:
        self.validators, self.data = validators, data
        self.run_dir, self.device = Path(run_dir), device
        self.batch_size, self.autocast_dtype, self.max_source_train = batch_size, autocast_dtype, max_source_train
        self.needs = frozenset().union(*(v.needs for v in validators.values())) if validators else frozenset()
        self.best: dict[str, dict[str, float]] = {}  # name -> {"score", "step"}
        missing = []
        if self.needs & TARGET_FIELDS and data.target is None:
            missing.append("target training inputs")
        if self.needs & (SOURCE_FIELDS - {"source_train_features"}) and data.source_val is None:
            missing.append("held-out source rows")
        if missing:
            users = sorted(n for n, v in validators.items() if v.needs & (TARGET_FIELDS | SOURCE_FIELDS))
            raise SelectionError(f"validators {users} need {' and '.join(missing)}, which this run does not have")

    def path(self, name: str) -> Path:
        return self.run_dir / "checkpoints" / f"best-{name}.pt"

    def _forward(self, model: nn.Module, batches: Any) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad(), eval_mode(model):
            return features_and_logits(model, batches, device=self.device, autocast_dtype=self.autocast_dtype,
                                       out_device="cpu")

    def _unlabelled(self, model: nn.Module, rows: UnlabelledInputs, limit: int | None = None):
        n = len(rows) if limit is None else min(limit, len(rows))
        return self._forward(model, (rows.inputs(torch.arange(s, min(s + self.batch_size, n)))
                                     for s in range(0, n, self.batch_size)))

    def inputs(self, model: nn.Module) -> ValidationInputs:
        """The fields the validators declared, computed on the current model."""
        fields: dict[str, torch.Tensor] = {}
        if self.needs & TARGET_FIELDS:
            fields["target_features"], fields["target_logits"] = self._unlabelled(model, self.data.target)
        if self.needs & (SOURCE_FIELDS - {"source_train_features"}):
            dataset = self.data.source_val
            labels: list[torch.Tensor] = []

            def batches():
                for s in range(0, len(dataset), self.batch_size):
                    x, y = fetch_batch(dataset, torch.arange(s, min(s + self.batch_size, len(dataset))))
                    labels.append(torch.as_tensor(y).long().cpu())
                    yield x

            fields["source_features"], fields["source_logits"] = self._forward(model, batches())
            fields["source_labels"] = torch.cat(labels)
        if "source_train_features" in self.needs and self.data.source_train is not None:
            fields["source_train_features"] = self._unlabelled(model, self.data.source_train, self.max_source_train)[0]
        return ValidationInputs(**{k: v for k, v in fields.items() if k in self.needs})

    def evaluate(self, model: nn.Module, step: int, write: bool,
                 checkpoint_state: Callable[[], dict[str, Any]]) -> dict[str, float]:
        """Every validator's score at `step` (logged as validator/<name>); a new best writes its checkpoint
        (`checkpoint_state()`: the model-only state, built once, only when some validator needs it)."""
        if not self.validators:
            return {}
        inputs = self.inputs(model)
        scores = {name: float(v(inputs)) for name, v in self.validators.items()}
        state: dict[str, Any] | None = None
        for name, score in scores.items():
            best = self.best.get(name)
            if not math.isfinite(score) or (best is not None and not score > best["score"]):  # ties: the earlier
                continue
            self.best[name] = {"score": score, "step": step}
            if write:
                state = checkpoint_state() if state is None else state
                save_checkpoint(self.path(name), {**state, "selected_by": name, "score": score})
        return {f"validator/{name}": s for name, s in scores.items()}

    def selected(self) -> dict[str, dict[str, float]]:
        """{validator: {"step", "score"}} of the checkpoints chosen so far."""
        return {name: dict(b) for name, b in self.best.items()}

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.selected()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = {name: {"score": float(b["score"]), "step": int(b["step"])} for name, b in state["best"].items()}
