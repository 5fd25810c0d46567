"""Adaptation methods: loss terms that plug into the shared trainer (one file each, registered by name)."""

from .base import Method, MethodContext, StepOutput
from .discriminator import DomainDiscriminator, domain_labels
from .grl import AdversaryWarmStart, grad_reverse, grl_coefficient
from .registry import (
    MethodError,
    available_methods,
    build_method,
    check_method_kwargs,
    get_method_class,
    method_option_types,
    register_method,
)

__all__ = [
    "AdversaryWarmStart",
    "DomainDiscriminator",
    "Method",
    "MethodContext",
    "MethodError",
    "StepOutput",
    "available_methods",
    "build_method",
    "check_method_kwargs",
    "domain_labels",
    "get_method_class",
    "grad_reverse",
    "grl_coefficient",
    "method_option_types",
    "register_method",
]
