"""Validators by name. Every module in `domainadapt.validators` is imported on first lookup, so a new validator
is one file with `@register_validator` and nothing else to edit."""

from __future__ import annotations

from typing import Any

from ..plugins import Registry
from .base import FIELDS, Validator, ValidatorError, validator_options

_REGISTRY = Registry("validator", __package__, frozenset({"base", "registry"}), ValidatorError)


def register_validator(cls: type[Validator]) -> type[Validator]:
    if not cls.needs or not cls.needs <= FIELDS:
        raise ValidatorError(f"validator {cls.__qualname__}: needs {sorted(cls.needs)} must be a non-empty subset "
                             f"of the ValidationInputs fields {sorted(FIELDS)}")
    other = _REGISTRY.get(cls.name)
    if other is not None and other is not cls and other.__qualname__ != cls.__qualname__:
        raise ValidatorError(f"validator name '{cls.name}' is taken by {other.__module__}.{other.__qualname__}")
    _REGISTRY.add(cls.name, cls)
    return cls


def available_validators() -> list[str]:
    return _REGISTRY.names()


def get_validator_class(name: str) -> type[Validator]:
    return _REGISTRY.lookup(name)  # type: ignore[return-value]


def build_validator(name: str, **options: Any) -> Validator:
    """The validator `name` with `options` (an unknown name or option, or a wrong type, is one error naming it)."""
    cls = get_validator_class(name)
    return cls(**validator_options(cls, options))
