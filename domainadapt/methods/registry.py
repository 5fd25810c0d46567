"""Methods by name. Every module in `domainadapt.methods` is imported on first lookup, so a new method is
one file with `@register_method` and nothing else to edit."""

from __future__ import annotations

import collections.abc
import inspect
import types
import typing
from typing import Any

from ..plugins import Registry
from .base import Method, MethodContext


class MethodError(ValueError):
    """Unknown method or bad method options."""


_REGISTRY = Registry("method", __package__, frozenset({"base", "registry", "grl", "discriminator", "model_parts"}), MethodError)


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


def check_method_kwargs(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Fail early (before data loading) on options the method's constructor does not take or of the wrong type;
    return them converted to the constructor's annotated types (`method_option_types`): text from the CLI such
    as "False", "3" or "0.5" becomes False, 3, 0.5 (a JSON config's false, 3, 0.5 are already right), ints
    given for floats become floats, lists given for tuples become tuples. One error names the method, the option
    and the type it must have: `method 'dann': option 'weight' must be a number, got 'abc'`."""
    cls = get_method_class(name)
    params = inspect.signature(cls.__init__).parameters
    accepted = {n for n, p in params.items() if n not in ("self", "context")
                and p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)}
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(kwargs) - accepted)
        if unknown:
            raise MethodError(
                f"method '{name}' does not take option(s) {unknown}; it takes {sorted(accepted) or 'no options'}"
            )
    hints = method_option_types(cls)
    where = f"method '{name}'"
    return {k: convert_option(hints[k], v, f"{where}: option '{k}'") if k in hints else v for k, v in kwargs.items()}


def normalize_method_kwargs(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """`kwargs` as a config stores (and hashes) them: each option given as text that converts to its annotated
    non-text type ("False" → False, "3" → 3) is replaced; every other value is kept exactly as given, so a config
    already typed right keeps its run key (1 stays 1 for a float option). Never raises: an unknown method or a
    bad value is left for `check_method_kwargs` to report."""
    if not isinstance(kwargs, dict) or not any(isinstance(v, str) for v in kwargs.values()):
        return kwargs
    try:
        hints = method_option_types(get_method_class(name))
    except (MethodError, TypeError, ValueError):  # an unknown method: validation names it
        return kwargs
    out = dict(kwargs)
    for key, value in kwargs.items():
        if isinstance(value, str) and key in hints:
            try:
                converted = convert_option(hints[key], value, key)
            except MethodError:
                continue
            if not isinstance(converted, str):
                out[key] = list(converted) if isinstance(converted, tuple) else converted  # JSON's own form
    return out


def build_method(name: str, context: MethodContext, **kwargs: Any) -> Method:
    return get_method_class(name)(context, **check_method_kwargs(name, kwargs))


def method_option_types(cls: type[Method]) -> dict[str, Any]:
    """Option name → type, from the constructor's annotations (string annotations of `from __future__ import
    annotations` resolved by `typing.get_type_hints`); an unannotated option with a bool/int/float/str default
    takes its default's type; others (and unresolvable annotations) are Any, passed through unchecked."""
    params = inspect.signature(cls.__init__).parameters
    try:
        hints = typing.get_type_hints(cls.__init__)
    except (NameError, TypeError):
        hints = {}
    out: dict[str, Any] = {}
    for name, p in params.items():
        if name in ("self", "context") or p.kind in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL):
            continue
        if name in hints:
            out[name] = hints[name]
        elif p.default is not inspect.Parameter.empty and type(p.default) in (bool, int, float, str):
            out[name] = type(p.default)
        else:
            out[name] = Any
    return out


_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")
_NONE = ("none", "null")


def type_name(hint: Any) -> str:
    """How an error words a type: "a number", "true or false", "a list of integers", "a number or None"."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        named = [type_name(a) for a in args if a is not type(None)]
        return " or ".join(named + (["None"] if type(None) in args else []))
    if origin in (tuple, list, collections.abc.Sequence):
        item = _item_type(hint)
        return "a list" if item is Any else f"a list of {_plural(item)}"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(hint, str(hint))


def _plural(hint: Any) -> str:
    return {bool: "booleans", int: "integers", float: "numbers", str: "strings"}.get(hint, type_name(hint))


def _item_type(hint: Any) -> Any:
    args = [a for a in typing.get_args(hint) if a is not Ellipsis]
    origin = typing.get_origin(hint)
    return args[0] if len(args) == 1 or (origin is tuple and args and len(set(args)) == 1) else Any


def convert_option(hint: Any, value: Any, where: str) -> Any:
    """`value` as the type `hint` (bool, int, float, str, X | None, tuples/lists of those; others pass through);
    text is parsed (`--method-arg` gives text when the value is not JSON). Raises MethodError "{where} must be
    {type}, got {value!r}"."""
    given = value

    def fail() -> MethodError:
        return MethodError(f"{where} must be {type_name(hint)}, got {given!r}")

    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        members = [a for a in args if a is not type(None)]
        if str in members and isinstance(value, str):
            return value
        if isinstance(value, str) and value.strip().lower() in _NONE and type(None) in args:
            return None
        for member in members:
            try:
                return convert_option(member, value, where)
            except MethodError:
                continue
        raise fail()
    if origin in (tuple, list, collections.abc.Sequence):
        if isinstance(value, str):
            text = value.strip().strip("()[]")
            value = [v.strip() for v in text.split(",") if v.strip()] if text else []
        if not isinstance(value, (list, tuple)):
            raise fail()
        item = _item_type(hint)
        try:
            items = [convert_option(item, v, where) for v in value]
        except MethodError:
            raise fail() from None
        return tuple(items) if origin is tuple else items
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        raise fail()
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise fail()
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise fail()
    if hint is str:
        if isinstance(value, str):
            return value
        raise fail()
    return value
