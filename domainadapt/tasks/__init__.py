"""What a run trains, one file per task, registered by name (`available_tasks()` lists them):
image_classification (named image domains, source → target; the default), masked_lm (continued pretraining:
DAPT / TAPT), text_classification (a sequence classifier, optionally from a DAPT run). A new task is one file
here (or a plug-in, `domainadapt.plugins`) with `@register_task`."""

from __future__ import annotations

from ..plugins import discover
from .base import NoOptions, Task, TaskError, TaskSetup

_REGISTRY: dict[str, Task] = {}


def register_task(cls: type[Task]) -> type[Task]:
    if not cls.name:
        raise TaskError(f"{cls.__qualname__} must set a class attribute `name`")
    _REGISTRY[cls.name] = cls()
    return cls


def _discover() -> None:
    discover(__package__, skip=frozenset({"base"}))


def available_tasks() -> list[str]:
    _discover()
    return sorted(_REGISTRY)


def get_task(name: str) -> Task:
    _discover()
    if name not in _REGISTRY:
        raise TaskError(f"unknown task '{name}'; choose one of {sorted(_REGISTRY)}")
    return _REGISTRY[name]


__all__ = ["NoOptions", "Task", "TaskError", "TaskSetup", "available_tasks", "get_task", "register_task"]
