"""The resolved configuration of one run: what it trains, how, and which seed. Its hash names the run."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from .schedules import SCHEDULES

AMP_MODES = ("none", "bf16", "fp16")
OPTIMIZERS = ("sgd", "adam", "adamw")

# Fields that change how a run is executed or observed, not what it computes: left out of the run key.
_NOT_IN_KEY = frozenset({"device", "progress", "checkpoint_every", "eval_every", "log_every", "eval_batch_size", "num_workers"})


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names the field."""


@dataclass
class TrainConfig:
    # what
    method: str = "source_only"
    method_kwargs: dict[str, Any] = field(default_factory=dict)
    source: str = "mnist"
    target: str = "mnist_m"
    backbone: str = "digits_cnn"
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    image_size: int = 32
    data_root: str | None = None
    test_fraction: float = 0.2
    split_seed: int = 0
    init_from: str | None = None  # a run directory or checkpoint whose model weights start this run (fine-tuning)
    regularizers: dict[str, dict[str, Any]] = field(default_factory=dict)  # e.g. {"ewc": {"lam": 100.0}}
    extra_eval: list[str] = field(default_factory=list)  # more domains evaluated on their test split
    freeze: list[str] = field(default_factory=list)  # fnmatch patterns of model parameter names kept fixed
    # how
    steps: int = 1000
    batch_size: int = 64  # per domain, per optimizer step, all ranks and accumulation micro-steps together
    grad_accum: int = 1
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "constant"
    schedule_kwargs: dict[str, float] = field(default_factory=dict)
    warmup_steps: int = 0
    grad_clip: float | None = None
    amp: str = "none"
    channels_last: bool = False
    sync_batchnorm: bool = True  # under DDP on CUDA: BatchNorm statistics over all processes
    seed: int = 0
    deterministic: bool = False
    # execution / observation (not part of the run key)
    device: str = "auto"
    eval_every: int = 0  # 0: evaluate at the end only
    checkpoint_every: int = 0  # 0: checkpoint at the end only
    log_every: int = 50
    eval_batch_size: int = 500
    num_workers: int = 0  # DataLoader workers reading batches ahead (0: read in the training process)
    progress: bool = True

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown config field(s) {unknown}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def key_dict(self) -> dict[str, Any]:
        """The fields that name the run: those that change what it computes and differ from their defaults
        (so adding a field with a default later leaves every existing run's key, and its results, valid)."""
        defaults = TrainConfig().to_dict()
        return {k: v for k, v in self.to_dict().items() if k not in _NOT_IN_KEY and v != defaults[k]}

    def config_hash(self) -> str:
        blob = json.dumps(self.key_dict(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def validate(self) -> "TrainConfig":
        """Cheap checks that need no data; domains and methods are checked by name elsewhere, also early."""
        positive = ("steps", "batch_size", "grad_accum", "image_size", "eval_batch_size", "log_every")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        for name in ("eval_every", "checkpoint_every", "warmup_steps", "num_workers"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.batch_size % self.grad_accum:
            raise ConfigError(f"batch_size {self.batch_size} is not divisible by grad_accum {self.grad_accum}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.amp not in AMP_MODES:
            raise ConfigError(f"amp must be one of {list(AMP_MODES)}, got '{self.amp}'")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {list(OPTIMIZERS)}, got '{self.optimizer}'")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {list(SCHEDULES)}, got '{self.schedule}'")
        if not 0.0 < self.test_fraction < 1.0:
            raise ConfigError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError(f"grad_clip must be > 0 or None, got {self.grad_clip}")
        return self
