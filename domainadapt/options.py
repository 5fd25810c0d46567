"""Typed options: a frozen dataclass per task / regularizer, parsed from the JSON dict a config holds.

`parse_options(Options, {"lam": 100}, where="regularizer 'ewc'")` checks names and types before any work and
fails with one line naming the field ("regularizer 'ewc' does not take ['lamda']; it takes [...]").
Field types understood: int, float, bool, str, their `X | None`, tuples/lists of those, dicts, and nested
option dataclasses (given as dicts). Written here rather than with pydantic to keep errors in the project's
one-line style and the options plain dataclasses that hash and print like configs.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import inspect
import types
import typing
from typing import Any, TypeVar, Union

T = TypeVar("T")


class OptionsError(ValueError):
    """Options that a task or regularizer does not take, or of the wrong type; the message names the field."""


def option_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def parse_options(cls: type[T], data: dict[str, Any] | None, *, where: str,
                  error: type[Exception] = OptionsError, noun: str = "options") -> T:
    """`cls(**data)` with every name and value checked; `noun` words the unknown-name error (e.g. "task_kwargs")."""
    data = {} if data is None else data
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise error(f"{where}: {noun} must be a JSON object of named values, got {type(data).__name__}")
    names = option_names(cls)
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise error(f"{where} does not take {noun} {unknown}; it takes {sorted(names)}")
    hints = typing.get_type_hints(cls)
    values = {name: check_value(hints[name], value, f"{where}: {name}", error) for name, value in data.items()}
    return cls(**values)


def check_value(hint: Any, value: Any, where: str, error: type[Exception] = OptionsError) -> Any:
    """`value` checked against the type `hint` (message: "{where} must be ..."); returns it (floats as float)."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        last: Exception | None = None
        for arg in (a for a in args if a is not type(None)):
            try:
                return check_value(arg, value, where, error)
            except Exception as err:  # noqa: BLE001 - try the next member of the union
                last = err
        raise last if last is not None else error(f"{where}: got {value!r}")
    if dataclasses.is_dataclass(hint):
        return parse_options(hint, value, where=where, error=error)
    if hint is Any:
        return value
    if origin in (tuple, list, collections.abc.Sequence):
        if not isinstance(value, (list, tuple)):
            raise error(f"{where} must be a list, got {value!r}")
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        item = args[0] if len(args) == 1 or (origin is tuple and len(set(args)) == 1) else Any
        items = [check_value(item, v, where, error) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise error(f"{where} must be a JSON object, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise error(f"{where} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise error(f"{where} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise error(f"{where} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise error(f"{where} must be a string, got {value!r}")
        return value
    return value


def check_call_options(fn: Any, options: dict[str, Any], *, where: str, error: type[Exception] = OptionsError,
                       skip: tuple[str, ...] = ("self", "context")) -> None:
    """Check `options` against the annotated keyword parameters of `fn` (a method's or backbone's constructor):
    unknown names, and values of the wrong type, fail naming the option."""
    params = inspect.signature(fn).parameters
    try:
        hints = typing.get_type_hints(fn)
    except (NameError, TypeError):
        hints = {}
    for name, value in options.items():
        if name in params and name not in skip and name in hints:
            check_value(hints[name], value, f"{where}: option '{name}'", error)
