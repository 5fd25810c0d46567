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
from ..models.blocks import block_parameter_names, model_blocks
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


def _cover(mine: set[str], managed: list[str], prefix: str = "") -> list[str]:
    """The fewest module prefixes whose managed parameters are exactly `mine` (walking down the name tree)."""
    under = [n for n in managed if _under(n, prefix)]
    hits = [n for n in under if n in mine]
    if not hits:
        return []
    if len(hits) == len(under):
        return [prefix]
    depth = prefix.count(".") + 1 if prefix else 0
    children = dict.fromkeys(".".join(n.split(".")[: depth + 1]) for n in under)
    return [p for child in children for p in _cover(mine, managed, child)]


def _under(name: str, prefix: str) -> bool:
    return not prefix or name == prefix or name.startswith(prefix + ".")


def group_log_names(model: nn.Module, groups: list[dict[str, Any]], max_parts: int = 3) -> list[str]:
    """A readable name per optimizer group, for the logged learning rates (`lr/<name>` in metrics.jsonl), so a
    reader sees *which* layers train at which lr, not "model@0.1". The name is the fewest module prefixes that
    hold exactly the group's parameters ("backbone", "head"), where the modules of one block (`models.blocks`,
    e.g. conv1 + bn1) go by the block's name ("backbone.conv1", "head.net.4"), joined by "+". One group holding
    the whole model is "model"; a group spread over more than `max_parts` modules keeps "model@<multiplier>",
    and groups of parameters that are not the model's keep their own name ("method"). Only parameters in the
    optimizer count, so layers frozen by config.freeze do not fragment a name. The names are computed from the
    groups as built, not stored in them: the optimizer's groups (and their checkpoints) stay as they are."""
    param_name = {id(p): n for n, p in model.named_parameters()}
    members = [[param_name.get(id(p)) for p in g["params"]] for g in groups]
    model_groups = [i for i, names in enumerate(members) if names and None not in names]
    managed = [n for i in model_groups for n in members[i]]
    try:
        blocks = model_blocks(model)
    except Exception:  # a model the block finder cannot split (names are cosmetic): module prefixes only
        blocks = []
    out = []
    for i, g in enumerate(groups):
        name = str(g.get("name", f"group{i}"))
        if i in model_groups and len(model_groups) == 1 and len(members[i]) == len(managed):
            name = "model"
        elif i in model_groups:
            parts = _cover(set(members[i]), managed)
            for block, prefixes in blocks:  # a whole block's modules -> the block's name
                live = [p for p in prefixes if any(_under(n, p) for n in managed)]
                if len(live) > 1 and all(p in parts for p in live):
                    parts = [block if p == live[0] else p for p in parts if p not in live[1:]]
            if len(parts) <= max_parts:
                name = "+".join(parts)
            elif name == "model":  # the multiplier-1 group, yet not the whole model
                name = "model@1"
        out.append(name)
    seen: dict[str, int] = {}
    for i, name in enumerate(out):  # unique keys even if two groups fall back to the same text
        k = seen[name] = seen.get(name, -1) + 1
        if k:
            out[i] = f"{name}#{k}"
    return out


def logged_learning_rates(base_lr: float, groups: list[dict[str, Any]], names: list[str]) -> dict[str, float]:
    """The learning rates a log step records. `lr` = config.lr under the schedule (`base_lr`): the lr of every group
    at multiplier 1, and what readers of a one-group run always saw (not group 0's, which with discriminative rates
    is the lowest). With several groups (or one off the base lr), also `lr/<name>` for each group that trains now
    (`names` from `group_log_names`: "lr/backbone", "lr/head.net.4", "lr/method"); a group at lr 0, or whose
    parameters are all frozen at this step (gradual unfreezing), is left out: its lr moves nothing. Read-only."""
    out = {"lr": base_lr}
    if len(groups) > 1 or groups[0]["lr"] != base_lr:
        for name, g in zip(names, groups):
            if g["lr"] > 0 and any(p.requires_grad for p in g["params"]):
                out[f"lr/{name}"] = g["lr"]
    return out
