"""Methods by name. Every module in `domainadapt.methods` is imported on first lookup, so a new method is
one file with `@register_method` and nothing else to edit."""

from __future__ import annotations

import inspect
from typing import Any

from ..options import check_call_options
from ..plugins import Registry
from .base import Method, MethodContext


class MethodError(ValueError):
    """Unknown method or bad method options."""


_REGISTRY = Registry("method", __package__, frozenset({"base", "registry", "grl", "discriminator"}), MethodError)


def register_method(cls: type[Method]) -> type[Method]:
    if not cls.name:
        raise MethodError(f"{cls.__qualname__} must set a class attribute `name`")
    other = _REGISTRY.get(cls.name)
    if other is not None and other is not cls and other.__qualname__ != cls.__qualname__:
        raise MethodError(f"method name '{cls.name}' is taken by {other.__module__}.{other.__qualname__}")
    _REGISTRY.add(cls.name, cls)
    return cls


def available_methods() -> list[str]:
    return _REGISTRY.names()


def get_method_class(name: str) -> type[Method]:
    return _REGISTRY.lookup(name)


def check_method_kwargs(name: str, kwargs: dict[str, Any]) -> None:
    """Fail early (before data loading) on options the method's constructor does not take."""
    cls = get_method_class(name)
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = {n for n in params if n not in ("self", "context")}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise MethodError(
            f"method '{name}' does not take option(s) {unknown}; it takes {sorted(accepted) or 'no options'}"
        )
    check_call_options(cls.__init__, kwargs, where=f"method '{name}'", error=MethodError)


def build_method(name: str, context: MethodContext, **kwargs: Any) -> Method:
    check_method_kwargs(name, kwargs)
    return get_method_class(name)(context, **kwargs)
