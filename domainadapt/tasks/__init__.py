"""What a run trains, one file per task, registered by name (`available_tasks()` lists them):
image_classification (named image domains, source → target; the default), masked_lm (continued pretraining:
DAPT / TAPT), text_classification (a sequence classifier, optionally from a DAPT run). A new task is one file
here (or a plug-in, `domainadapt.plugins`) with `@register_task`."""

from __future__ import annotations

from ..plugins import Registry
from .base import NoOptions, Task, TaskError, TaskSetup

_REGISTRY = Registry("task", __name__, frozenset({"base"}), TaskError)


def register_task(cls: type[Task]) -> type[Task]:
    _REGISTRY.add(cls.name, cls())
    return cls


def available_tasks() -> list[str]:
    return _REGISTRY.names()


def get_task(name: str) -> Task:
    return _REGISTRY.lookup(name)


__all__ = ["NoOptions", "Task", "TaskError", "TaskSetup", "available_tasks", "get_task", "register_task"]
