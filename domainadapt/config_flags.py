"""`domainadapt train`'s flags and the TrainConfig they build: a flag per config field derived from its annotation,
the --config file under them, --preset under both, --strategy's edits on top. Its own module: this is the job of
turning argv into a validated config (tests and scripts call `train_config` without training), apart from the
subcommands in cli.py."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import types
import typing
from pathlib import Path
from typing import Any

from .presets import PRESETS, finish_preset, preset_fields
from .strategies import STRATEGIES, apply_strategy, strategy_overrides
from .train.config import TrainConfig


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _key_values(items: list[str] | None, flag: str) -> dict[str, Any]:
    """KEY=VALUE items (VALUE read as JSON when it parses, else kept as text) or JSON objects, merged in order:
    `--lr-mults 'backbone.*=0.1'`, `--regularizers '{"ewc": {"lam": 100}}'`, `--method-arg trade_off=0.3`."""
    out: dict[str, Any] = {}
    for item in items or []:
        if item.lstrip().startswith("{"):
            try:
                obj = json.loads(item)
            except json.JSONDecodeError as err:
                raise ValueError(f"{flag}: '{item}' is not a valid JSON object ({err.msg})") from None
            if not isinstance(obj, dict):
                raise ValueError(f"{flag}: '{item}' is not a JSON object")
            out.update(obj)
            continue
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{flag} expects KEY=VALUE or a JSON object, got '{item}'")
        out[key] = _parse_value(value)
    return out


class _SetNone:
    """What an optional number's flag parses `none` to: "set the field to None" (a plain None means "not given")."""

    def __repr__(self) -> str:
        return "none"


SET_NONE = _SetNone()


def _optional_number(kind: type) -> Any:
    """The argparse type of an `int | None` / `float | None` field: a number, or `none` (overrides a --config value)."""
    def parse(text: str) -> Any:
        return SET_NONE if text.strip().lower() in ("none", "null") else kind(text)

    parse.__name__ = kind.__name__  # argparse's message: "invalid float value: 'x'"
    return parse


def _flag_type(hint: Any) -> Any:
    """The argparse type of a config field's annotation: int, float or str, or one of them | None."""
    args = [a for a in typing.get_args(hint) if a is not type(None)] if typing.get_origin(hint) in (
        typing.Union, types.UnionType) else [hint]
    if len(args) != 1 or args[0] not in (int, float, str):
        return None
    optional = type(None) in typing.get_args(hint)
    return _optional_number(args[0]) if optional and args[0] in (int, float) else args[0]


def config_flags() -> list[tuple[dataclasses.Field, str, dict[str, Any]]]:
    """(field, flag, argparse options) for every TrainConfig field, derived from its annotation, so a new field
    gets a flag with no edit here: `--field-name VALUE` (an optional number also takes `none`); booleans as
    `--name` / `--no-name` (the flag listed is the one that changes the default); dicts as repeatable
    KEY=VALUE or JSON-object items, merged into the --config file's dict (`--method-arg` for `method_kwargs`,
    `--lr-mults`, `--regularizers`); lists as one or more values, repeatable (`--freeze 'backbone.*' 'head.0.*'`,
    or `--freeze` twice), replacing the --config file's list (the flag alone clears it). Help is the field's
    doc; choices are the config's own."""
    hints = typing.get_type_hints(TrainConfig)
    defaults = TrainConfig().to_dict()
    out = []
    for f in dataclasses.fields(TrainConfig):
        hint, doc, default = hints[f.name], f.metadata.get("doc", ""), defaults[f.name]
        origin = typing.get_origin(hint) or hint
        name = f.name.replace("_", "-")
        if origin is dict:
            flag = f"--{f.name[: -len('_kwargs')].replace('_', '-')}-arg" if f.name.endswith("_kwargs") else f"--{name}"
            opts = dict(action="append", metavar="KEY=VALUE", dest=f.name,
                        help=f"{doc} (KEY=VALUE or a JSON object; repeatable, merged into --config's)")
        elif origin is list:
            opts = dict(nargs="*", action="extend", dest=f.name, metavar="VALUE",
                        help=f"{doc} (one or more; repeatable; replaces --config's)")
            flag = f"--{name}"
        elif hint is bool:
            flag = f"--no-{name}" if default else f"--{name}"
            opts = dict(action=argparse.BooleanOptionalAction, default=None, dest=f.name,
                        help=f"{doc} (default {'on' if default else 'off'})")
        else:
            kind = _flag_type(hint)
            unset = "; none unsets it" if getattr(kind, "__qualname__", "").startswith("_optional_number") else ""
            opts = dict(type=kind, dest=f.name, help=f"{doc} (default {default}{unset})")
            if f.metadata.get("choices"):
                opts["choices"] = list(f.metadata["choices"])
            flag = f"--{name}"
        out.append((f, flag, opts))
    return out


def strategy_options() -> list[str]:
    """The options `--strategy-arg` accepts: strategy_overrides' keyword arguments (but the model, not a flag)."""
    params = inspect.signature(strategy_overrides).parameters.values()
    return [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name != "model"]


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """The config arguments of `train`: --config, a flag per TrainConfig field, --strategy(-arg), --preset."""
    p.add_argument("--config", type=Path, help="JSON file of TrainConfig fields; flags given override it")
    for f, flag, opts in config_flags():
        boolean = opts.get("action") is argparse.BooleanOptionalAction  # it makes --no-name from --name itself
        p.add_argument(f"--{f.name.replace('_', '-')}" if boolean else flag, **opts)
    p.add_argument("--strategy", metavar="NAME", help="a transfer strategy (domainadapt.strategies) applied to the "
                   f"config the other flags build: {', '.join(STRATEGIES)}; join with '+', e.g. gradual+discriminative")
    p.add_argument("--strategy-arg", action="append", metavar="KEY=VALUE",
                   help=f"an option of --strategy ({', '.join(strategy_options())}), e.g. blocks=1 for partial (repeatable)")
    p.add_argument("--preset", choices=sorted(PRESETS), help="a named recipe under the file and the flags given: "
                   + "; ".join(f"{name}: {preset.doc}" for name, preset in PRESETS.items()).replace("%", "%%"))


def _apply_strategy_flags(config: TrainConfig, strategy: str | None, items: list[str] | None) -> TrainConfig:
    """--strategy / --strategy-arg: the strategy's config edits on top of the flags' config (validated)."""
    options = _key_values(items, "--strategy-arg")
    if strategy is None:
        if options:
            raise ValueError("--strategy-arg needs --strategy NAME")
        return config
    unknown = sorted(set(options) - set(strategy_options()))
    if unknown:
        raise ValueError(f"--strategy-arg: unknown option '{unknown[0]}'; choose from {strategy_options()}")
    config.validate()  # the other flags' errors first, named by their field, not blamed on the strategy
    try:
        return apply_strategy(config, strategy, **options)
    except ValueError as err:
        raise ValueError(f"--strategy {strategy}: {err}") from None


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig `train` runs, built without training: the --config file's fields, then the flags given
    (a dict flag merges into the file's dict, any other replaces the value), then --strategy's edits; a --preset
    comes first, under all of them."""
    base: dict[str, Any] = {}
    if args.config is not None:
        if not args.config.is_file():
            raise ValueError(f"config file {args.config} does not exist")
        try:
            base = json.loads(args.config.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"config file {args.config} is not valid JSON ({err})") from None
        if isinstance(base, dict) and isinstance(base.get("config"), dict):
            base = base["config"]  # accept a run's config.json too
        if not isinstance(base, dict):
            raise ValueError(f"config file {args.config} must hold a JSON object of TrainConfig fields, "
                             f"not a {type(base).__name__}")
    explicit = set(base)  # the fields the file or a flag sets: a preset never overrides them
    preset = getattr(args, "preset", None)
    if preset is not None:
        base = {**preset_fields(preset), **base}
    for f, flag, opts in config_flags():
        value = getattr(args, f.name, None)
        if value is None:
            continue
        explicit.add(f.name)
        if opts.get("action") == "append":  # KEY=VALUE items merge into the config file's options
            given = base.get(f.name) or {}
            if not isinstance(given, dict):
                raise ValueError(f"config file {args.config}: {f.name} must be a JSON object, got {given!r}")
            base[f.name] = {**given, **_key_values(value, flag)}
        else:
            base[f.name] = None if value is SET_NONE else value
    config = TrainConfig.from_dict(base)
    if preset is not None:
        config = finish_preset(config, preset, explicit)
    return _apply_strategy_flags(config, args.strategy, args.strategy_arg)


METHOD_ARG_HELP = "a method's option for the runs of that method, e.g. shot:beta=0.1 (converted to the option's type)"


def method_args(items: list[str], methods: list[str]) -> dict[str, dict[str, str]]:
    """['shot:beta=0.1', ...] → {'shot': {'beta': '0.1'}} (text; the config converts it to the option's type)."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        method, sep, assignment = item.partition(":")
        key, eq, value = assignment.partition("=")
        if not sep or not eq or not method or not key:
            raise ValueError(f"--method-arg takes METHOD:KEY=VALUE, got '{item}'")
        if method not in methods:
            raise ValueError(f"--method-arg '{item}': method '{method}' is not in --methods {methods}")
        out.setdefault(method, {})[key] = value
    return out
