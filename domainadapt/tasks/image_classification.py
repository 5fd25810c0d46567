"""Image classification between named domains: source → target, a classifier (the default task).

source, target, extra_eval name domains (`domainadapt domains`; file:PATH, folder:PATH, shuffled:NAME); the
model is the registered image backbone `backbone` + head. The previous task of a fine-tuning run is its source
domain: the EWC Fisher is taken on the source training split (where the starting weights were trained).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..data import DomainError, available_domains, check_compatible, load_splits
from ..data.registry import is_domain_name
from ..models.registry import build_model, check_image_backbone
from ..regularizers.fisher import FisherData
from ..train.checkpoint import load_model_weights
from ..train.config import TrainConfig
from . import register_task
from .base import NoOptions, Task, TaskSetup


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
    Options = NoOptions

    def check(self, config: TrainConfig, options: NoOptions) -> None:
        roles = [("source", config.source), ("target", config.target)] + [("extra_eval", n) for n in config.extra_eval]
        for role, name in roles:
            if not is_domain_name(name):
                raise DomainError(f"unknown {role} domain '{name}'; available: {', '.join(available_domains())} "
                                  "(or file:PATH, folder:PATH, shuffled:NAME)")
        check_image_backbone(config.backbone, config.backbone_kwargs)

    def build(self, config: TrainConfig, options: NoOptions, init_state: dict[str, Any] | None) -> TaskSetup:
        split_kwargs = dict(root=config.data_root, image_size=config.image_size, test_fraction=config.test_fraction,
                            split_seed=config.split_seed)
        source = load_splits(config.source, **split_kwargs)
        target = load_splits(config.target, **split_kwargs)
        check_compatible(source["train"], target["train"])
        if config.target_per_class is not None:  # few labelled target examples: a different draw for every seed
            keep = per_class_subset(target["train"].labels, config.target_per_class, seed=1_000 + config.seed)
            target["train"] = target["train"].subset(keep, name=f"{target['train'].name}[{config.target_per_class}/class]")
        extra = {name: load_splits(name, **split_kwargs)["test"] for name in config.extra_eval}
        for domain in extra.values():
            check_compatible(source["train"], domain)
        model = self.build_model(config, options, {"num_classes": source["train"].num_classes})
        if init_state is not None:
            load_model_weights(model, init_state, config.init_from)
        return TaskSetup(
            model=model,
            source_train=source["train"],
            target_train=target["train"],
            eval_sets={"source_test": source["test"], "target_test": target["test"],
                       **{f"{name}_test": d for name, d in extra.items()}},
            fisher=FisherData(source["train"]),
            sizes={"source_train": len(source["train"]), "source_test": len(source["test"]),
                   "target_train": len(target["train"]), "target_test": len(target["test"])},
            feature_dim=model.feature_dim,
            num_classes=model.num_classes,
        )

    def build_model(self, config: TrainConfig, options: NoOptions, info: dict[str, int]) -> nn.Module:
        return build_model(config.backbone, info["num_classes"], config.image_size, config.backbone_kwargs)
