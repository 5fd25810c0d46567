"""A finished run, loaded for use: its model (weights in, eval mode), config, result, class names, input contract."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..data import is_lazy_name
from ..runs import RESULT_FILE, load_trained_model, read_result
from ..tasks.image_classification import image_input_contract
from ..train.config import TrainConfig


class DeployError(ValueError):
    """A run that cannot be exported or predicted with as asked; the message says why."""


@dataclass
class LoadedRun:
    run_dir: Path
    model: torch.nn.Module
    config: TrainConfig
    result: dict[str, Any]
    classes: list[str]
    contract: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.contract.get("kind", "image"))


def load_run(run_dir: str | Path) -> LoadedRun:
    """The finished run in `run_dir`; an unfinished or foreign directory is one clear error."""
    run_dir = Path(run_dir).expanduser()
    if not run_dir.is_dir():
        raise DeployError(f"no run directory at {run_dir}")
    result = read_result(run_dir)
    if result is None:
        raise DeployError(f"{run_dir} is not a finished run (no {RESULT_FILE}); train it to the end first")
    model, config = load_trained_model(run_dir)
    num_classes = int(getattr(model, "num_classes", 0))
    classes = [str(c) for c in result.get("classes") or range(num_classes)]  # runs before names were stored: numbers
    contract = dict(result.get("input") or {})
    if not contract:
        if config.task != "image_classification":
            raise DeployError(f"{run_dir} records no input contract (trained by an older domainadapt); re-run it")
        contract = image_input_contract(config, lazy=is_lazy_name(config.source))
    if num_classes and len(classes) != num_classes:
        raise DeployError(f"{run_dir}: result.json names {len(classes)} classes but the model has {num_classes}")
    return LoadedRun(run_dir, model, config, result, classes, contract)
