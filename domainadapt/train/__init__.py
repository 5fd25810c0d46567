"""The shared trainer and what it needs: config, schedules, checkpoints, parameter groups, unfreezing, logging."""

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import ConfigError, TrainConfig
from .health import HealthMonitor, HealthOptions, UnhealthyRunError
from .schedules import dann_annealing, lr_factor
from .step import StepModule
from .trainer import Trainer

__all__ = [
    "CheckpointError",
    "ConfigError",
    "HealthMonitor",
    "HealthOptions",
    "StepModule",
    "TrainConfig",
    "Trainer",
    "UnhealthyRunError",
    "dann_annealing",
    "load_checkpoint",
    "lr_factor",
    "save_checkpoint",
]
