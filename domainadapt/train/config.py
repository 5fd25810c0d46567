"""The resolved configuration of one run: what it trains, how, and which seed. Its hash names the run."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
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
    task: str = "image_classification"  # or "masked_lm", "text_classification" (domainadapt.tasks)
    task_kwargs: dict[str, Any] = field(default_factory=dict)
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
    target_per_class: int | None = None  # labelled target examples per class kept for training (None: all)
    init_from: str | None = None  # a run directory or checkpoint whose model weights start this run (fine-tuning)
    regularizers: dict[str, dict[str, Any]] = field(default_factory=dict)  # e.g. {"ewc": {"lam": 100.0}}
    extra_eval: list[str] = field(default_factory=list)  # more domains evaluated on their test split
    freeze: list[str] = field(default_factory=list)  # fnmatch patterns of model parameter names kept fixed
    # transfer strategies (domainadapt.strategies; ULMFiT sec. 3.2): per-parameter learning rates, gradual unfreezing
    lr_mults: dict[str, float] = field(default_factory=dict)  # fnmatch pattern of model parameter name -> lr multiplier
    layer_lr_decay: float | None = None  # lr of the block at depth d from the top = lr * decay**d (ULMFiT: 1/2.6)
    unfreeze_every: int = 0  # gradual unfreezing: head first, one more backbone block every N steps (0: off)
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
        if self.target_per_class is not None and (not isinstance(self.target_per_class, int) or self.target_per_class < 1):
            raise ConfigError(f"target_per_class must be a positive integer or None, got {self.target_per_class!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError(f"grad_clip must be > 0 or None, got {self.grad_clip}")
        self._validate_transfer()
        return self

    def _validate_transfer(self) -> None:
        """The transfer-strategy fields (domainadapt.strategies): patterns and multipliers, decay, period."""
        if not isinstance(self.lr_mults, dict):
            raise ConfigError(f"lr_mults must map fnmatch patterns to multipliers, got {self.lr_mults!r}")
        for pattern, mult in self.lr_mults.items():
            if not isinstance(pattern, str) or not pattern:
                raise ConfigError(f"lr_mults: patterns must be non-empty strings, got {pattern!r}")
            if isinstance(mult, bool) or not isinstance(mult, (int, float)) or not math.isfinite(mult) or mult <= 0:
                raise ConfigError(f"lr_mults['{pattern}'] must be a finite number > 0, got {mult!r} "
                                  "(use freeze to keep parameters fixed)")
        decay = self.layer_lr_decay
        if decay is not None and (isinstance(decay, bool) or not isinstance(decay, (int, float))
                                  or not math.isfinite(decay) or decay <= 0):
            raise ConfigError(f"layer_lr_decay must be a finite number > 0 or None (ULMFiT uses 1/2.6), got {decay!r}")
        if isinstance(self.unfreeze_every, bool) or not isinstance(self.unfreeze_every, int) or self.unfreeze_every < 0:
            raise ConfigError(f"unfreeze_every must be an integer >= 0 (0: no gradual unfreezing), got {self.unfreeze_every!r}")
