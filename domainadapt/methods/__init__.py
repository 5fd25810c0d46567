"""Adaptation methods: loss terms that plug into the shared trainer (one file each, registered by name)."""

from .base import Method, MethodContext, StepOutput
from .grl import grad_reverse, grl_coefficient
from .registry import (
    MethodError,
    available_methods,
    build_method,
    check_method_kwargs,
    get_method_class,
    register_method,
)

__all__ = [
    "Method",
    "MethodContext",
    "MethodError",
    "StepOutput",
    "available_methods",
    "build_method",
    "check_method_kwargs",
    "get_method_class",
    "grad_reverse",
    "grl_coefficient",
    "register_method",
]
