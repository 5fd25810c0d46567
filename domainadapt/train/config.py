"""The resolved configuration of one run: what it trains, how, and which seed. Its hash names the run."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import typing
from dataclasses import dataclass, field
from typing import Any

from ..methods.registry import MethodError, get_method_class, normalize_method_kwargs
from ..options import check_value
from .health import ON_UNHEALTHY, parse_health_options
from .schedules import SCHEDULES

AMP_MODES = ("none", "bf16", "fp16")
OPTIMIZERS = ("sgd", "adam", "adamw")


def _field(default: Any = None, doc: str = "", *, key: bool = True, choices: tuple[str, ...] | None = None,
           factory: Any = None) -> Any:
    """A config field with its help text, whether it names the run (`key`), and its allowed values."""
    metadata = {"doc": doc, "key": key, "choices": choices}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names the field."""


@dataclass
class TrainConfig:
    """The CLI's `train` flags are made from these fields (`--field-name`, help = doc); fields with key=False change
    how a run is executed or observed, not what it computes, and are left out of the run key."""

    # what
    task: str = _field("image_classification", "what the run trains (`domainadapt tasks`)")
    task_kwargs: dict[str, Any] = _field(doc="the task's options (its Options dataclass)", factory=dict)
    method: str = _field("source_only", "adaptation method (`domainadapt methods`)")
    method_kwargs: dict[str, Any] = _field(doc="the method's options", factory=dict)
    source: str = _field("mnist", "source domain (`domainadapt domains`)")
    target: str = _field("mnist_m", "target domain (a corpus spec for task masked_lm)")
    backbone: str = _field("digits_cnn", "backbone (`domainadapt backbones`; a text task also takes a Hugging Face "
                           "folder or hub name)")
    backbone_kwargs: dict[str, Any] = _field(doc="backbone options, e.g. batch_norm=true", factory=dict)
    image_size: int = _field(32, "image side in pixels")
    data_root: str | None = _field(None, "folder with torchvision datasets (full MNIST, USPS, SVHN)")
    test_fraction: float = _field(0.2, "share of each domain held out as its test split")
    split_seed: int = _field(0, "seed of the train/test splits")
    target_per_class: int | None = _field(None, "labelled target examples per class kept for training (None: all)")
    init_from: str | None = _field(None, "a finished run directory or checkpoint whose model weights start this run")
    regularizers: dict[str, dict[str, Any]] = _field(doc='penalties added to any method, e.g. {"ewc": {"lam": 100}} '
                                                     "(`domainadapt regularizers`)", factory=dict)
    extra_eval: list[str] = _field(doc="more domains evaluated on their test split", factory=list)
    validators: dict[str, dict[str, Any]] = _field(doc="label-free selection scores computed at every evaluation, "
                                                   'each keeping its best checkpoint, e.g. {"snd": {}, "source_val": {}} '
                                                   "(`domainadapt validators`)", factory=dict)
    source_val_fraction: float = _field(0.2, "share of source training rows held out for the validators that read "
                                        "source data (source_val, dev, mmd); none is held out without one")
    freeze: list[str] = _field(doc="fnmatch patterns of model parameter names kept fixed", factory=list)
    # transfer strategies (domainadapt.strategies; ULMFiT sec. 3.2): per-parameter learning rates, gradual unfreezing
    lr_mults: dict[str, float] = _field(doc="fnmatch pattern of a parameter name -> lr multiplier", factory=dict)
    layer_lr_decay: float | None = _field(None, "lr of the block at depth d from the top = lr * decay**d (ULMFiT: 1/2.6)")
    unfreeze_every: int = _field(0, "gradual unfreezing: head first, one more backbone block every N steps (0: off)")
    # how
    steps: int = _field(1000, "optimizer steps")
    batch_size: int = _field(64, "per domain, per optimizer step, all processes and accumulation micro-steps together")
    grad_accum: int = _field(1, "micro-steps per optimizer step")
    optimizer: str = _field("sgd", "optimizer", choices=OPTIMIZERS)
    lr: float = _field(0.01, "base learning rate")
    momentum: float = _field(0.9, "SGD momentum")
    weight_decay: float = _field(5e-4, "weight decay")
    schedule: str = _field("constant", "learning-rate schedule", choices=SCHEDULES)
    schedule_kwargs: dict[str, float] = _field(doc="schedule options, e.g. alpha=10 for dann", factory=dict)
    warmup_steps: int = _field(0, "linear learning-rate warm-up steps")
    grad_clip: float | None = _field(None, "clip the gradient norm to this value")
    amp: str = _field("none", "automatic mixed precision", choices=AMP_MODES)
    channels_last: bool = _field(False, "channels_last memory format for CNNs")
    sync_batchnorm: bool = _field(True, "under DDP on CUDA: BatchNorm statistics over all processes")
    seed: int = _field(0, "seed of the initialisation, the batch order and every random draw")
    deterministic: bool = _field(False, "deterministic kernels (bitwise-repeatable CPU runs)")
    # execution / observation (not part of the run key)
    device: str = _field("auto", "auto, cpu, cuda, cuda:1, mps", key=False)
    eval_every: int = _field(0, "evaluate every N steps (0: at the end only)", key=False)
    checkpoint_every: int = _field(0, "checkpoint every N steps (0: at the end only)", key=False)
    log_every: int = _field(50, "log the training losses every N steps", key=False)
    eval_batch_size: int = _field(500, "rows per evaluation batch", key=False)
    num_workers: int = _field(0, "DataLoader workers reading batches ahead (0: read in the training process)", key=False)
    progress: bool = _field(True, "show a progress bar", key=False)
    on_unhealthy: str = _field("warn", "when a training health check fires (train/health.py: source_at_chance, "
                               "discriminator_won, discriminator_pinned, target_collapse, loss_spike): warn = record "
                               "it in metrics.jsonl, the progress bar and result.json; stop = also end the run with an "
                               "error, keeping the last checkpoint; off = no checks", key=False, choices=ON_UNHEALTHY)
    health_kwargs: dict[str, Any] = _field(doc="thresholds of the health checks (train/health.py HealthOptions), "
                                           "e.g. min_steps=100", key=False, factory=dict)

    @classmethod
    def execution_fields(cls) -> frozenset[str]:
        """Fields that change how a run is executed or observed, not what it computes: not in the run key."""
        return frozenset(f.name for f in dataclasses.fields(cls) if not f.metadata.get("key", True))

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
        skip = self.execution_fields()
        values = self.to_dict()
        values["method_kwargs"] = normalize_method_kwargs(self.method, values["method_kwargs"])  # "False" = false
        key = {k: v for k, v in values.items() if k not in skip and v != defaults[k]}
        revision = method_revision(self.method)
        if revision:  # the method's behaviour changed since revision 0 (Method.revision)
            key["method_revision"] = revision
        return key

    def config_hash(self) -> str:
        blob = json.dumps(self.key_dict(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def validate(self) -> "TrainConfig":
        """Cheap checks that need no data; domains and methods are checked by name elsewhere, also early."""
        hints = typing.get_type_hints(TrainConfig)
        # a method option given as text (`--method-arg entropy=False`) is stored as its annotated type; a value
        # typed right is kept as given (its run key unchanged); bad ones are reported by check_method_kwargs
        self.method_kwargs = normalize_method_kwargs(self.method, self.method_kwargs)
        for f in dataclasses.fields(self):  # types first: a JSON config may hold anything
            check_value(hints[f.name], getattr(self, f.name), f.name, ConfigError)
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
        if not 0.0 < self.source_val_fraction < 1.0:
            raise ConfigError(f"source_val_fraction must be in (0, 1), got {self.source_val_fraction}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.amp not in AMP_MODES:
            raise ConfigError(f"amp must be one of {list(AMP_MODES)}, got '{self.amp}'")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {list(OPTIMIZERS)}, got '{self.optimizer}'")
        if self.on_unhealthy not in ON_UNHEALTHY:
            raise ConfigError(f"on_unhealthy must be one of {list(ON_UNHEALTHY)}, got '{self.on_unhealthy}'")
        parse_health_options(self.health_kwargs, ConfigError)
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


def method_revision(name: str) -> int:
    """The registered method's `revision` (0 for a name no method has: validation reports that elsewhere)."""
    try:
        return int(getattr(get_method_class(name), "revision", 0))
    except MethodError:
        return 0
