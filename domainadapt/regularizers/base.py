"""The plug-in point of penalties: a regularizer turns typed options + the run's starting model into a module
whose `forward(model)` is one more loss term, added to whatever the method returns (DESIGN: "EWC is a
regulariser that can be added to any method").

    @register_regularizer
    class MyPenalty(Regularizer):
        name = "my_penalty"
        Options = MyOptions                  # a dataclass: the config's {"my_penalty": {...}} is parsed into it
        def build(self, options, model, context) -> nn.Module: ...

`RegularizerContext` carries what a penalty may need beyond the model: the checkpoint the run starts from
(`previous`, to carry earlier anchors) and the task's Fisher data (`fisher`: its data and per-example NLL).
Modules a penalty returns are checkpointed with the model (their buffers: anchors, Fishers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn

from ..options import OptionsError, parse_options
from ..plugins import Registry
from .fisher import FisherData


class RegularizerError(OptionsError):
    """An unknown regularizer, options it does not take, or a penalty the task cannot supply data for."""


@dataclass
class NoOptions:
    pass


@dataclass
class RegularizerContext:
    previous: dict[str, Any] | None  # the checkpoint the run starts from (init_from), or None
    fisher: FisherData | None  # the task's data + likelihood for a Fisher, or None
    no_fisher_reason: str = "this task supplies no data for a Fisher"


class Regularizer:
    name: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions

    def parse(self, options: dict[str, Any] | None) -> Any:
        return parse_options(self.Options, options, where=f"regularizer '{self.name}'", error=RegularizerError,
                             noun="options")

    def check(self, options: Any) -> None:
        """Cheap checks beyond types (ranges); no data."""

    def build(self, options: Any, model: nn.Module, context: RegularizerContext) -> nn.Module:
        raise NotImplementedError


_REGISTRY = Registry("regularizer", __package__, frozenset({"base"}), RegularizerError)


def register_regularizer(cls: type[Regularizer]) -> type[Regularizer]:
    _REGISTRY.add(cls.name, cls())
    return cls


def available_regularizers() -> list[str]:
    return _REGISTRY.names()


def get_regularizer(name: str) -> Regularizer:
    return _REGISTRY.lookup(name)


def check_regularizers(spec: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Every named penalty's options, parsed and checked (no data): {name: typed options}."""
    if not isinstance(spec, dict):
        raise RegularizerError(f"regularizers must map names to options, got {type(spec).__name__}")
    out = {}
    for name, options in spec.items():
        regularizer = get_regularizer(name)
        out[name] = typed = regularizer.parse(options)
        regularizer.check(typed)
    return out


def build_regularizers(spec: dict[str, dict[str, Any]], model: nn.Module, context: RegularizerContext) -> nn.ModuleDict:
    """Each named penalty built around the model's current (starting) weights, in the order of `spec`."""
    typed = check_regularizers(spec)
    return nn.ModuleDict({name: get_regularizer(name).build(options, model, context) for name, options in typed.items()})
