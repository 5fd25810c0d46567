"""Image classification between named domains: source → target, a classifier (the default task).

source, target, extra_eval name domains (`domainadapt domains`; file:PATH, folder:PATH, shuffled:NAME in memory;
office31:amazon & co., lazy_folder:PATH, list:PATH file-backed); the model is the registered image backbone
`backbone` + head. The previous task of a fine-tuning run is its source domain: the EWC Fisher is taken on the
source training split (where the starting weights were trained; for file-backed domains through the eval pipeline,
so the Fisher does not depend on augmentation draws).

Task options (task_kwargs, `Options`): the pipelines of file-backed domains (train split: da_train, test splits:
da_eval by default; in-memory domains take none), class-balanced source sampling, the target-test protocol, and
the benchmark loading switches (check_counts, download). The defaults leave task_kwargs {} and so leave every
digits run's key and numbers unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..data import DomainError, ImageFileDomain, available_domains, check_compatible, is_lazy_name, load_splits
from ..data.benchmarks import is_benchmark_name, protocol_of
from ..data.registry import TARGET_TEST, is_domain_name
from ..data.transforms import TRANSFORMS
from ..models.registry import build_model, check_image_backbone
from ..regularizers.fisher import FisherData
from ..train.checkpoint import load_model_weights
from ..train.config import TrainConfig
from ..train.selection import source_holdout, validators_need_source
from . import register_task
from .base import Task, TaskError, TaskSetup


@dataclass(frozen=True)
class Options:
    """train_transform / eval_transform: a pipeline of data/transforms.py for file-backed domains, or "auto"
    (da_train for the training splits, da_eval for the test splits; in-memory domains take no pipeline).
    class_balanced: draw the source stream with probability ∝ 1 / class count, a seeded order per epoch that
    resumes exactly (file-backed source domains only; in-memory ones raise). target_test: "auto" (the benchmark's
    protocol: Office-31 / Office-Home / VisDA test on the whole target domain, DomainNet on its official test
    list, other domains on a held-out split), "whole" or "split" (a seeded stratified split, test_fraction).
    check_counts: check a benchmark's image counts (False: tiny or partial copies). download: fetch missing
    benchmark archives."""

    train_transform: str = "auto"
    eval_transform: str = "auto"
    class_balanced: bool = False
    target_test: str = "auto"
    check_counts: bool = True
    download: bool = False


def per_class_subset(labels: torch.Tensor, per_class: int, seed: int) -> torch.Tensor:
    """Indices of `per_class` examples of every class (all of a class that has fewer), a seeded choice, sorted."""
    g = torch.Generator().manual_seed(seed)
    keep = []
    for c in labels.unique():
        members = (labels == c).nonzero().squeeze(1)
        keep.append(members[torch.randperm(len(members), generator=g)[:per_class]])
    return torch.cat(keep).sort().values


@register_task
class ImageClassification(Task):
    name = "image_classification"
    Options = Options
    holds_out_source = True

    def check(self, config: TrainConfig, options: Options) -> None:
        roles = [("source", config.source), ("target", config.target)] + [("extra_eval", n) for n in config.extra_eval]
        for role, name in roles:
            if not is_domain_name(name):
                raise DomainError(f"unknown {role} domain '{name}'; available: {', '.join(available_domains())} "
                                  "(or file:PATH, folder:PATH, shuffled:NAME, lazy_folder:PATH, list:PATH)")
        for field_name in ("train_transform", "eval_transform"):
            value = getattr(options, field_name)
            if value != "auto" and value not in TRANSFORMS:
                raise TaskError(f"task_kwargs.{field_name} must be auto or one of {', '.join(TRANSFORMS)}, "
                                f"got {value!r}")
            in_memory = [name for _, name in roles if not is_lazy_name(name)]
            if value not in ("auto", "none") and in_memory:
                raise TaskError(f"task_kwargs.{field_name}={value!r} applies to file-backed domains; "
                                f"{in_memory[0]!r} is in memory (its images are already image_size)")
        if options.target_test not in TARGET_TEST:
            raise TaskError(f"task_kwargs.target_test must be one of {', '.join(TARGET_TEST)}, "
                            f"got {options.target_test!r}")
        official = is_benchmark_name(config.target) and protocol_of(config.target) == "official"
        if options.target_test != "auto" and official:
            raise TaskError(f"task_kwargs.target_test: '{config.target}' has official train/test lists; use auto")
        if options.target_test == "whole" and not is_lazy_name(config.target):
            raise TaskError(f"task_kwargs.target_test='whole' applies to file-backed targets; '{config.target}' is in "
                            "memory (it is split by test_fraction)")
        if options.class_balanced and not is_lazy_name(config.source):
            raise TaskError(f"task_kwargs.class_balanced is implemented for file-backed source domains only; "
                            f"'{config.source}' is in memory")
        check_image_backbone(config.backbone, config.backbone_kwargs, config.image_size)

    def build(self, config: TrainConfig, options: Options, init_state: dict[str, Any] | None) -> TaskSetup:
        split_kwargs: dict[str, Any] = dict(root=config.data_root, image_size=config.image_size,
                                            test_fraction=config.test_fraction, split_seed=config.split_seed)
        lazy_kwargs = dict(check_counts=options.check_counts, download=options.download)
        source = load_splits(config.source, **split_kwargs, **_only_lazy(config.source, lazy_kwargs))
        target = load_splits(config.target, **split_kwargs, **_only_lazy(config.target, lazy_kwargs),
                             target_test=options.target_test)
        check_compatible(source["train"], target["train"])
        if config.target_per_class is not None:  # few labelled target examples: a different draw for every seed
            keep = per_class_subset(target["train"].labels, config.target_per_class, seed=1_000 + config.seed)
            target["train"] = target["train"].subset(keep, name=f"{target['train'].name}[{config.target_per_class}/class]")
        extra = {name: load_splits(name, **split_kwargs, **_only_lazy(name, lazy_kwargs))["test"]
                 for name in config.extra_eval}
        for domain in extra.values():
            check_compatible(source["train"], domain)
        source_val = None
        if validators_need_source(config.validators):  # rows held out of source training, for the validators
            keep, held_out = source_holdout(len(source["train"]), config.source_val_fraction, config.split_seed)
            source_val = source["train"].subset(held_out, name=f"{source['train'].name}[val]")
            source["train"] = source["train"].subset(keep, name=f"{source['train'].name}[train]")
        fisher_source = _pipeline(source["train"], options.eval_transform, "da_eval")
        train, evaluate = options.train_transform, options.eval_transform
        source = {"train": _pipeline(source["train"], train, "da_train", balanced=options.class_balanced),
                  "test": _pipeline(source["test"], evaluate, "da_eval")}
        target_train_eval = _pipeline(target["train"], evaluate, "da_eval")
        target = {"train": _pipeline(target["train"], train, "da_train"),
                  "test": _pipeline(target["test"], evaluate, "da_eval")}
        extra = {name: _pipeline(d, evaluate, "da_eval") for name, d in extra.items()}
        model = self.build_model(config, options, {"num_classes": source["train"].num_classes})
        if init_state is not None:
            load_model_weights(model, init_state, config.init_from)
        return TaskSetup(
            model=model,
            source_train=source["train"],
            target_train=target["train"],
            eval_sets={"source_test": source["test"], "target_test": target["test"],
                       **{f"{name}_test": d for name, d in extra.items()}},
            fisher=FisherData(fisher_source),
            sizes={"source_train": len(source["train"]), "source_test": len(source["test"]),
                   "target_train": len(target["train"]), "target_test": len(target["test"]),
                   **({"source_val": len(source_val)} if source_val is not None else {})},
            feature_dim=model.feature_dim,
            num_classes=model.num_classes,
            class_names=tuple(source["train"].classes),
            input_contract=image_input_contract(config, lazy=isinstance(source["test"], ImageFileDomain),
                                                eval_transform=options.eval_transform),
            source_val=None if source_val is None else _pipeline(source_val, evaluate, "da_eval"),
            target_train_eval=target_train_eval,
        )

    def build_model(self, config: TrainConfig, options: Options, info: dict[str, int]) -> nn.Module:
        return build_model(config.backbone, info["num_classes"], config.image_size, config.backbone_kwargs)


def image_input_contract(config: TrainConfig, *, lazy: bool, eval_transform: str = "auto") -> dict[str, Any]:
    """What the trained model takes: float32 N×3×S×S in [0, 1] (every image backbone normalises inside), made
    from an image file by the run's evaluation pipeline (data/transforms.py): da_eval for file-backed domains
    (resize 256·S/224, centre crop S), a square resize for in-memory ones (their images were resized so)."""
    transform = ("da_eval" if eval_transform == "auto" else eval_transform) if lazy else "resize"
    return {"kind": "image", "image_size": config.image_size, "channels": 3, "dtype": "float32",
            "value_range": [0.0, 1.0], "normalisation": "inside the model", "layout": "N×3×H×W",
            "transform": transform}


def _only_lazy(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The loading switches of file-backed domains (an in-memory domain's loader keeps its own defaults)."""
    return kwargs if is_lazy_name(name) else {}


def _pipeline(domain: Any, choice: str, auto: str, balanced: bool = False) -> Any:
    """A file-backed domain through pipeline `choice` ("auto": `auto`); an in-memory domain as it is."""
    if not isinstance(domain, ImageFileDomain):
        return domain
    out = domain.with_transform(auto if choice == "auto" else choice)
    return out.balanced() if balanced else out
