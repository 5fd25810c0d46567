"""What a run trains: a task turns a config into a model, its training streams and its evaluation sets.

The trainer, checkpoints, resume and result files are the same for every task; only this part differs.
  image_classification  named image domains, source → target, a classifier (the default);
  masked_lm             continued pretraining of a masked LM on domain text (DAPT/TAPT, `domainadapt.text.tasks`);
  text_classification   a sequence classifier, optionally from a DAPT run (`domainadapt.text.tasks`).
A task is a pair of functions: `check(config)` (cheap, no data: fails before any long work) and
`build(config, init_state) -> TaskSetup`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from .train.checkpoint import CheckpointError
from .train.config import TrainConfig

Fisher = Callable[[nn.Module, dict[str, Any]], dict[str, torch.Tensor]]


@dataclass
class TaskSetup:
    model: nn.Module
    source_train: Dataset | None
    target_train: Dataset | None
    eval_sets: dict[str, Dataset]
    fisher: Fisher  # (model, EWC options) → diagonal Fisher on the previous task's data
    evaluator: Callable[..., dict[str, float]] | None = None  # None: classifier accuracy (trainer.evaluate)
    sizes: dict[str, int] = field(default_factory=dict)
    feature_dim: int = 0
    num_classes: int = 0


@dataclass(frozen=True)
class Task:
    check: Callable[[TrainConfig], None]
    build: Callable[[TrainConfig, dict[str, Any] | None], TaskSetup]


def load_model_weights(model: nn.Module, state: dict[str, Any], where: Any) -> None:
    """Load the `model.` entries of a checkpoint's modules into `model` (a clear error when they do not fit)."""
    prefix = "model."
    weights = {k[len(prefix) :]: v for k, v in state["modules"].items() if k.startswith(prefix)}
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise CheckpointError(f"the model of {where} does not fit this run's model: {err}") from None


# ------------------------------------------------------------------------------------------- image classification


def _check_image(config: TrainConfig) -> None:
    from .data import DomainError, available_domains
    from .data.registry import is_domain_name
    from .models import BACKBONES

    for role, name in [("source", config.source), ("target", config.target)] + [("extra_eval", n) for n in config.extra_eval]:
        if not is_domain_name(name):
            raise DomainError(f"unknown {role} domain '{name}'; available: {', '.join(available_domains())} "
                              "(or file:PATH, folder:PATH, shuffled:NAME)")
    if config.backbone not in BACKBONES:
        raise ValueError(f"unknown backbone '{config.backbone}'; choose one of {list(BACKBONES)}")
    if config.task_kwargs:
        raise ValueError(f"task 'image_classification' takes no task_kwargs, got {sorted(config.task_kwargs)}")


def per_class_subset(labels: torch.Tensor, per_class: int, seed: int) -> torch.Tensor:
    """Indices of `per_class` examples of every class (all of a class that has fewer), a seeded choice, sorted."""
    g = torch.Generator().manual_seed(seed)
    keep = []
    for c in labels.unique():
        members = (labels == c).nonzero().squeeze(1)
        keep.append(members[torch.randperm(len(members), generator=g)[:per_class]])
    return torch.cat(keep).sort().values


def _build_image(config: TrainConfig, init_state: dict[str, Any] | None) -> TaskSetup:
    from .data import check_compatible, load_splits
    from .methods.ewc import diagonal_fisher
    from .models import build_model

    split_kwargs = dict(
        root=config.data_root, image_size=config.image_size, test_fraction=config.test_fraction, split_seed=config.split_seed
    )
    source = load_splits(config.source, **split_kwargs)
    target = load_splits(config.target, **split_kwargs)
    check_compatible(source["train"], target["train"])
    if config.target_per_class is not None:  # few labelled target examples: a different draw for every seed
        keep = per_class_subset(target["train"].labels, config.target_per_class, seed=1_000 + config.seed)
        target["train"] = target["train"].subset(keep, name=f"{target['train'].name}[{config.target_per_class}/class]")
    extra = {name: load_splits(name, **split_kwargs)["test"] for name in config.extra_eval}
    for domain in extra.values():
        check_compatible(source["train"], domain)
    model = build_model(config.backbone, source["train"].num_classes, config.image_size, config.backbone_kwargs)
    if init_state is not None:
        load_model_weights(model, init_state, config.init_from)

    def fisher(m: nn.Module, options: dict[str, Any]) -> dict[str, torch.Tensor]:
        # the previous task of a fine-tuning run is its source domain (where the starting weights were trained)
        return diagonal_fisher(m, source["train"], kind=options.get("kind", "true"), n_samples=options.get("samples", 1000),
                               chunk_size=options.get("chunk_size", 64))

    return TaskSetup(
        model=model,
        source_train=source["train"],
        target_train=target["train"],
        eval_sets={"source_test": source["test"], "target_test": target["test"],
                   **{f"{name}_test": d for name, d in extra.items()}},
        fisher=fisher,
        sizes={"source_train": len(source["train"]), "source_test": len(source["test"]),
               "target_train": len(target["train"]), "target_test": len(target["test"])},
        feature_dim=model.feature_dim,
        num_classes=model.num_classes,
    )


TASKS: dict[str, Task] = {"image_classification": Task(_check_image, _build_image)}


def register_task(name: str, task: Task) -> None:
    TASKS[name] = task


def get_task(name: str) -> Task:
    if name not in TASKS and name in ("masked_lm", "text_classification"):
        from .text import tasks as _text_tasks  # noqa: F401  (registers the text tasks)
    if name not in TASKS:
        raise ValueError(f"unknown task '{name}'; choose one of {sorted({*TASKS, 'masked_lm', 'text_classification'})}")
    return TASKS[name]
