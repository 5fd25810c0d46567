"""The optimizer's parameter groups: the model at lr (or one group per learning-rate multiplier: discriminative
fine-tuning, ULMFiT sec. 3.2), the method's own modules at lr × method.lr_mult; and the optimizer itself."""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from ..methods.base import Method
from ..models.blocks import block_parameter_names
from .config import TrainConfig


def check_layer_lr_decay(decay: float | None) -> None:
    if decay is not None and not (isinstance(decay, (int, float)) and math.isfinite(decay) and decay > 0):
        raise ValueError(f"layer_lr_decay must be a finite number > 0 (ULMFiT uses 1/2.6 ≈ 0.385), got {decay!r}")


def param_lr_multipliers(
    model: nn.Module, lr_mults: Mapping[str, float] | None = None, layer_lr_decay: float | None = None
) -> dict[str, float]:
    """Learning-rate multiplier per parameter name: decay^(depth of its block from the top) (discriminative
    fine-tuning, ULMFiT sec. 3.2) times the multiplier of every `lr_mults` fnmatch pattern it matches (a product,
    so the order of the patterns does not matter). A pattern that matches no parameter is an error."""
    check_layer_lr_decay(layer_lr_decay)
    names = [n for n, _ in model.named_parameters()]
    mults = dict.fromkeys(names, 1.0)
    if layer_lr_decay is not None:
        blocks = block_parameter_names(model)
        for i, (_, block_names) in enumerate(blocks):
            depth = len(blocks) - 1 - i
            for n in block_names:
                mults[n] = float(layer_lr_decay) ** depth
    for pattern, mult in (lr_mults or {}).items():
        hits = fnmatch.filter(names, pattern)
        if not hits:
            raise ValueError(f"lr_mults pattern '{pattern}' matches no parameter; names look like {names[:4]}")
        for n in hits:
            mults[n] *= float(mult)
    return mults


def group_by_lr_mult(
    named_params: Iterable[tuple[str, nn.Parameter]], mults: Mapping[str, float], base_lr: float
) -> list[dict[str, Any]]:
    """One optimizer group per distinct multiplier, ordered by first appearance (bottom → top), so the groups
    come out the same, in the same order, on every build: a checkpointed optimizer loads on resume.
    Names: "model" for multiplier 1, "model@<mult>" otherwise."""
    groups: dict[float, dict[str, Any]] = {}
    for name, p in named_params:
        m = mults[name]
        if m not in groups:
            groups[m] = {"name": "model" if m == 1.0 else f"model@{m:.6g}", "params": [], "lr": base_lr * m,
                         "lr_mult": m}
        groups[m]["params"].append(p)
    out = list(groups.values())
    seen: dict[str, int] = {}
    for g in out:  # two multipliers equal to 6 digits: keep the names unique
        k = seen[g["name"]] = seen.get(g["name"], -1) + 1
        if k:
            g["name"] = f"{g['name']}#{k}"
    return out


def build_param_groups(
    model: nn.Module,
    method: Method,
    lr: float,
    *,
    lr_mults: dict[str, float] | None = None,
    layer_lr_decay: float | None = None,
) -> list[dict[str, Any]]:
    """Model parameters at `lr`; the method's own modules at `lr × method.lr_mult` (default 1).

    With `lr_mults` / `layer_lr_decay` (discriminative fine-tuning, see domainadapt.strategies) the model's
    parameters split into one group per distinct lr, ordered bottom → top, named "model" / "model@<mult>".
    Parameters frozen now (requires_grad False: config.freeze) are left out; those that gradual unfreezing
    freezes later are in from the start (SGD/Adam skip a parameter whose grad is None)."""
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if lr_mults or layer_lr_decay is not None:
        groups = group_by_lr_mult(trainable, param_lr_multipliers(model, lr_mults, layer_lr_decay), lr)
    else:
        groups = []
    if not groups:
        groups = [{"name": "model", "params": [p for _, p in trainable], "lr": lr}]
    method_params = [p for p in method.parameters() if p.requires_grad]
    if method_params:
        groups.append({"name": "method", "params": method_params, "lr": lr * float(getattr(method, "lr_mult", 1.0))})
    return groups


def build_optimizer(config: TrainConfig, groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
