"""Label-free model selection: validators score a model from unlabelled target training inputs and labelled
source rows held out of training, never from target labels (`ValidationInputs` has no field for them). One
file each, registered: `source_val`, `entropy`, `im`, `bnm`, `snd`, `class_ami`, `dev`, `mmd`. Every score
is oriented so that higher is better. The trainer records a run's configured validators at each evaluation and
keeps the checkpoint each prefers (train/selection.py); experiments/validators.py measures which to trust."""

from .base import ValidationInputs, Validator, ValidatorError
from .registry import available_validators, build_validator, get_validator_class, register_validator

__all__ = ["ValidationInputs", "Validator", "ValidatorError", "available_validators", "build_validator",
           "get_validator_class", "register_validator"]
