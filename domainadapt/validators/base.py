"""What a validator receives and what it is: a label-free score of a trained model, higher is better.

`ValidationInputs` holds the model's outputs on target TRAINING inputs (no labels) and on labelled source rows
held out of training; it has no field for target labels, so none can reach a validator. Each validator
declares the fields it reads (`needs`, as pytorch-adapt's validators declare their inputs), and the trainer
computes only those (train/selection.py).
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from ..options import check_value


class ValidatorError(ValueError):
    """Unknown validator, bad option, or inputs a validator cannot score; the message names it."""


@dataclass(frozen=True)
class ValidationInputs:
    """What a validator receives. There is no field for target labels: they are unreachable by construction."""

    target_logits: torch.Tensor | None = None  # n_t × K logits of the model on target TRAIN inputs
    target_features: torch.Tensor | None = None  # n_t × d features (the head's input)
    source_logits: torch.Tensor | None = None  # n_v × K logits on the held-out source VALIDATION rows
    source_features: torch.Tensor | None = None  # n_v × d
    source_labels: torch.Tensor | None = None  # n_v labels of the source validation rows
    source_train_features: torch.Tensor | None = None  # features of (a sample of) source TRAIN rows (DEV)


FIELDS = frozenset(f.name for f in dataclasses.fields(ValidationInputs))


class Validator:
    """Subclass: set `name` and `needs`, take typed keyword options with defaults, implement `score`."""

    name: ClassVar[str] = ""
    needs: ClassVar[frozenset[str]] = frozenset()

    def score(self, inputs: ValidationInputs) -> float:
        raise NotImplementedError

    def __call__(self, inputs: ValidationInputs) -> float:
        """`score(inputs)` after checking every needed field: present, non-empty, finite, 2-D (labels 1-D),
        with one row count per domain."""
        rows: dict[str, tuple[str, int]] = {}
        for field in sorted(self.needs):
            value = getattr(inputs, field)
            where = f"validator '{self.name}': input '{field}'"
            if value is None:
                raise ValidatorError(f"{where} is missing")
            dims = 1 if field == "source_labels" else 2
            if value.dim() != dims or len(value) == 0:
                raise ValidatorError(f"{where} must be a non-empty {dims}-D tensor, got shape {tuple(value.shape)}")
            if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                raise ValidatorError(f"{where} holds non-finite values")
            group = "source_train" if field == "source_train_features" else field.split("_")[0]
            if group in rows and rows[group][1] != len(value):
                raise ValidatorError(f"{where} has {len(value)} rows, '{rows[group][0]}' has {rows[group][1]}")
            rows.setdefault(group, (field, len(value)))
        return float(self.score(inputs))


def validator_options(cls: type[Validator], options: dict[str, Any]) -> dict[str, Any]:
    """`options` checked against the annotated keyword parameters of `cls.__init__` (unknown names and wrong
    types fail naming the option); numbers given as text are not accepted here (configs are typed JSON)."""
    own = cls.__init__ is not object.__init__  # a validator without options has object's (*args, **kwargs)
    params = {n: p for n, p in inspect.signature(cls.__init__).parameters.items()
              if own and n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    unknown = sorted(set(options) - set(params))
    if unknown:
        raise ValidatorError(f"validator '{cls.name}' does not take option(s) {unknown}; it takes "
                             f"{sorted(params) or 'no options'}")
    hints = typing.get_type_hints(cls.__init__) if own else {}
    return {k: check_value(hints[k], v, f"validator '{cls.name}': option '{k}'", ValidatorError) if k in hints else v
            for k, v in options.items()}


def entropy_rows(p: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) of each probability row (0·log 0 = 0)."""
    return -(p * torch.log(p.clamp_min(1e-30))).sum(1)


def as_float64(x: torch.Tensor) -> torch.Tensor:
    return x.detach().to("cpu", torch.float64)
