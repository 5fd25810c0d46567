"""The shared trainer and what it needs: config, schedules, checkpoints, parameter groups, unfreezing, logging."""

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import ConfigError, TrainConfig
from .schedules import dann_annealing, lr_factor
from .trainer import StepModule, Trainer

__all__ = [
    "CheckpointError",
    "ConfigError",
    "StepModule",
    "TrainConfig",
    "Trainer",
    "dann_annealing",
    "load_checkpoint",
    "lr_factor",
    "save_checkpoint",
]
