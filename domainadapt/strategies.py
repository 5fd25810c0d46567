"""Transfer strategies as TrainConfig edits: which layers of a source-trained model are fine-tuned, and how.

A strategy is data: `strategy_overrides(config, "partial", blocks=1)` returns the TrainConfig fields it sets
(init_from, freeze, layer_lr_decay, unfreeze_every), so experiments and the CLI can build, print and hash it.

  scratch             random init, no init_from: the target-only control of the negative-transfer gap
  feature_extraction  backbone frozen, head trained (the "off-the-shelf features" baseline)
  partial             the top k backbone blocks + head trained, the rest frozen (Yosinski et al. 2014, sec. 4)
  full                every parameter fine-tuned
  gradual             gradual unfreezing: head only first, then one more backbone block, from the top, every N
                      steps (Howard & Ruder 2018, ULMFiT, sec. 3.2 "Gradual unfreezing")
  discriminative      layer-wise lr decay: block at depth d from the top trains at lr·decay^d
                      (ULMFiT sec. 3.2 "Discriminative fine-tuning": η^{l−1} = η^l / 2.6)

"gradual" and "discriminative" combine with each other and with one of feature_extraction / partial / full,
by joining names with "+", e.g. "gradual+discriminative" (ULMFiT's recipe).

Blocks (`model_blocks`) are the units these strategies count: ordered bottom → top, each a list of module
prefixes of parameter names. The schedule and the per-block learning rates are applied by the trainer
(`train.param_groups`, `train.unfreezing`); the blocks they count are `models.blocks`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from .models.blocks import Blocks, block_parameter_names, freeze_patterns, model_blocks, split_blocks
from .models.registry import build_model
from .train.config import TrainConfig
from .train.param_groups import check_layer_lr_decay, param_lr_multipliers
from .train.unfreezing import GradualUnfreezing

__all__ = ["STRATEGIES", "Blocks", "GradualUnfreezing", "apply_strategy", "block_parameter_names", "config_model",
           "freeze_patterns", "model_blocks", "param_lr_multipliers", "split_blocks", "strategy_label",
           "strategy_overrides"]

STRATEGIES: dict[str, str] = {
    "scratch": "random init (no init_from): the target-only control",
    "feature_extraction": "backbone frozen, head trained",
    "partial": "top `blocks` backbone blocks + head trained",
    "full": "every parameter trained",
    "gradual": "head first, one more backbone block unfrozen every `unfreeze_every` steps (ULMFiT sec. 3.2)",
    "discriminative": "lr of the block at depth d from the top = lr · decay^d (ULMFiT sec. 3.2, decay 1/2.6)",
}
_LAYERS = ("scratch", "feature_extraction", "partial", "full")  # which layers train: at most one of these
_MODIFIERS = ("gradual", "discriminative")
ULMFIT_DECAY = 1 / 2.6


# ---------------------------------------------------------------------------------------------- strategies as config edits
def _parse(name: str) -> list[str]:
    parts = [p.strip() for p in name.split("+")]
    unknown = [p for p in parts if p not in STRATEGIES]
    if unknown:
        raise ValueError(f"unknown transfer strategy '{unknown[0]}'; choose from {list(STRATEGIES)} (join with '+')")
    if len(set(parts)) != len(parts):
        raise ValueError(f"strategy '{name}' names a part twice")
    layers = [p for p in parts if p in _LAYERS]
    if len(layers) > 1:
        raise ValueError(f"strategy '{name}' combines {layers}; choose one of {list(_LAYERS)}")
    if "scratch" in parts and len(parts) > 1:
        raise ValueError(f"strategy '{name}': 'scratch' trains every layer from random init and takes no modifier")
    return parts


PRETRAINED_OPTIONS = ("weights", "pretrained")  # torchvision's weights=NAME|PATH, timm's pretrained=true|PATH


def pretrained_options(config: TrainConfig) -> list[str]:
    """The backbone options of `config` that load pretrained weights (empty: the backbone starts random)."""
    return [k for k in PRETRAINED_OPTIONS if config.backbone_kwargs.get(k) not in (None, False)]


def _without_pretrained(config: TrainConfig) -> dict[str, Any]:
    return {k: v for k, v in config.backbone_kwargs.items() if k not in PRETRAINED_OPTIONS}


def config_model(config: TrainConfig, model: nn.Module | None = None) -> nn.Module:
    """`model`, or the image classifier `config` builds, on the meta device (no weights allocated, nothing
    downloaded): what strategies count blocks of."""
    if model is not None:
        return model
    task = getattr(config, "task", "image_classification")
    if task != "image_classification":
        raise ValueError(f"this strategy counts the model's blocks: for task '{task}' pass model=<a built model>")
    kwargs = _without_pretrained(config)  # never download for names
    with torch.device("meta"):
        return build_model(config.backbone, 2, config.image_size, kwargs)


def strategy_overrides(
    config: TrainConfig,
    strategy: str,
    *,
    init_from: str | None = None,
    blocks: int | None = None,
    unfreeze_every: int | None = None,
    decay: float | None = None,
    model: nn.Module | None = None,
) -> dict[str, Any]:
    """The TrainConfig fields `strategy` sets, as a dict (JSON-able data).

    init_from: the source-trained run (default: config.init_from); not needed for a pretrained backbone
    (backbone_kwargs "weights" for torchvision, "pretrained" for timm). blocks: k for "partial". unfreeze_every: N for "gradual" (default
    steps // (backbone blocks + 1), so the last block unfreezes with a stage of training left). decay: for
    "discriminative" (default 1/2.6). model: the model whose blocks are counted (default: the image classifier
    the config builds; give it for other tasks). The base config's `freeze` and `lr_mults` are kept (they
    compose); `layer_lr_decay` and `unfreeze_every` are set by the strategy."""
    parts = _parse(strategy)
    given = {"blocks": blocks, "unfreeze_every": unfreeze_every, "decay": decay}
    owner = {"blocks": "partial", "unfreeze_every": "gradual", "decay": "discriminative"}
    for option, value in given.items():
        if value is not None and owner[option] not in parts:
            raise ValueError(f"strategy '{strategy}' takes no option '{option}' (it belongs to '{owner[option]}')")
    out: dict[str, Any] = {"layer_lr_decay": None, "unfreeze_every": 0}
    if "scratch" in parts:
        out["init_from"] = None
        if pretrained_options(config):
            out["backbone_kwargs"] = _without_pretrained(config)
        return out
    source = init_from if init_from is not None else config.init_from
    if source is None and not pretrained_options(config):
        raise ValueError(f"strategy '{strategy}' transfers a trained model: give init_from (the source run) "
                         "or a pretrained backbone (backbone_kwargs weights, or pretrained for timm:NAME)")
    out["init_from"] = None if source is None else str(source)
    freeze = list(config.freeze)
    generic = model is not None and not isinstance(getattr(model, "backbone", None), nn.Module)  # no "backbone."
    needs_blocks = "partial" in parts or ("gradual" in parts and unfreeze_every is None) or \
        ("feature_extraction" in parts and generic)
    if needs_blocks:
        model = config_model(config, model)
        backbone, names = split_blocks(model)[0], [n for n, _ in model.named_parameters()]
    else:
        backbone, names = [], []
    if "feature_extraction" in parts:
        freeze += freeze_patterns(backbone, names) if generic else ["backbone.*"]
    if "partial" in parts:
        if blocks is None:
            raise ValueError("strategy 'partial' needs blocks=k (how many top backbone blocks to train)")
        if not isinstance(blocks, int) or not 0 <= blocks <= len(backbone):
            raise ValueError(f"partial: blocks must be an integer in [0, {len(backbone)}] (the backbone "
                             f"'{config.backbone}' has {len(backbone)} blocks: {[b for b, _ in backbone]}), got {blocks!r}")
        freeze += freeze_patterns(backbone[: len(backbone) - blocks], names)
    out["freeze"] = list(dict.fromkeys(freeze))
    if "gradual" in parts:
        if unfreeze_every is None:
            unfreeze_every = max(1, config.steps // (len(backbone) + 1))
        if not isinstance(unfreeze_every, int) or unfreeze_every <= 0:
            raise ValueError(f"gradual: unfreeze_every must be a positive integer, got {unfreeze_every!r}")
        out["unfreeze_every"] = unfreeze_every
    if "discriminative" in parts:
        out["layer_lr_decay"] = ULMFIT_DECAY if decay is None else decay
        check_layer_lr_decay(out["layer_lr_decay"])
    return out


def apply_strategy(config: TrainConfig, strategy: str, **options: Any) -> TrainConfig:
    """A copy of `config` with `strategy_overrides(config, strategy, **options)` applied (and validated)."""
    return dataclasses.replace(config, **strategy_overrides(config, strategy, **options)).validate()


def strategy_label(config: TrainConfig) -> str:
    """A best-effort strategy name read back from a config (for table rows): e.g. "partial+gradual"."""
    if config.init_from is None and not pretrained_options(config):
        return "scratch"
    if "backbone.*" in config.freeze:
        parts = ["feature_extraction"]
    elif any(p.startswith("backbone.") for p in config.freeze):
        parts = ["partial"]
    else:
        parts = ["full"]
    if config.unfreeze_every > 0:
        parts.append("gradual")
    if config.layer_lr_decay is not None:
        parts.append("discriminative")
    return parts[0] if len(parts) == 1 else "+".join(p for p in parts if p != "full")
