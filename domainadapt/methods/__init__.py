"""Adaptation methods: loss terms that plug into the shared trainer (one file each, registered by name)."""

from .base import Method, MethodContext, StepOutput, TargetPass
from .discriminator import DomainDiscriminator, domain_labels
from .grl import AdversaryWarmStart, grad_reverse, grl_coefficient
from .model_parts import hypothesis_layer, norm_parameters
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
    "TargetPass",
    "available_methods",
    "build_method",
    "check_method_kwargs",
    "domain_labels",
    "get_method_class",
    "grad_reverse",
    "grl_coefficient",
    "hypothesis_layer",
    "norm_parameters",
    "method_option_types",
    "register_method",
]
