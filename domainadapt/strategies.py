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
(`build_param_groups`, `Trainer._apply_unfreeze_schedule`); the logic lives here.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from .train.config import TrainConfig

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

_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)

Blocks = list[tuple[str, list[str]]]


# ---------------------------------------------------------------------------------------------- blocks
def _has_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _param_children(module: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, c) for n, c in module.named_children() if _has_params(c)]


def _expand(child: nn.Module, path: str) -> Blocks:
    """One block, or one per layer when the child's parameters all sit in one ModuleList (a stack of layers,
    e.g. a transformer encoder's `encoder.layer`), found through lone wrappers."""
    inner, inner_path = child, path
    while not isinstance(inner, nn.ModuleList):
        kids = _param_children(inner)
        if len(kids) != 1 or any(True for _ in inner.parameters(recurse=False)):
            return [(path, [path])]
        name, inner = kids[0]
        inner_path = _join(inner_path, name)
    layers = [_join(inner_path, i) for i, m in inner.named_children() if _has_params(m)]
    if any(True for _ in inner.parameters(recurse=False)) or not layers:
        return [(path, [path])]
    return [(p, [p]) for p in layers]


def _children_blocks(children: list[tuple[str, nn.Module]], prefix: str, blocks: Blocks) -> Blocks:
    """A block per child (per layer for a ModuleList stack); a normalisation layer joins the block before it."""
    for name, child in children:
        path = _join(prefix, name)
        if isinstance(child, _NORMS) and blocks:
            blocks[-1][1].append(path)
        else:
            blocks.extend(_expand(child, path))
    return blocks


def _blocks_of(module: nn.Module, prefix: str) -> Blocks:
    """Top-level parameterised children in order (through lone wrappers such as `net`); a normalisation layer
    joins the block of the layer before it (conv1 + bn1)."""
    children = _param_children(module)
    while len(children) == 1 and not any(True for _ in module.parameters(recurse=False)) \
            and not isinstance(children[0][1], nn.ModuleList) and _param_children(children[0][1]):
        name, module = children[0]
        prefix = _join(prefix, name)
        children = _param_children(module)
    own = [_join(prefix, n) for n, _ in module.named_parameters(recurse=False)]
    if not children and prefix:
        return [(prefix, [prefix])]  # a leaf layer (a Linear head)
    blocks: Blocks = [(prefix or "<own>", own)] if own else []
    return _children_blocks(children, prefix, blocks)


def _in_block(name: str, prefixes: list[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def split_blocks(model: nn.Module) -> tuple[Blocks, Blocks]:
    """(backbone blocks, head blocks), each bottom → top; see `model_blocks`. Blocks without parameters of their
    own (a decoder whose weight is tied to the embeddings) are dropped."""
    names = [n for n, _ in model.named_parameters()]
    backbone_blocks, head_blocks = _split_blocks(model)
    backbone_blocks = [b for b in backbone_blocks if any(_in_block(n, b[1]) for n in names)]
    head_blocks = [b for b in head_blocks if any(_in_block(n, b[1]) for n in names)]
    counts = {n: sum(_in_block(n, prefixes) for _, prefixes in backbone_blocks + head_blocks) for n in names}
    bad = [n for n, c in counts.items() if c != 1]
    if bad:  # a model layout the rules do not cover: fail rather than train the wrong layers
        raise ValueError(f"model_blocks: parameters {bad[:4]} lie in {[counts[n] for n in bad[:4]]} blocks, not 1")
    return backbone_blocks, head_blocks


def _split_blocks(model: nn.Module) -> tuple[Blocks, Blocks]:
    own: Blocks = [("<own>", [n for n, _ in model.named_parameters(recurse=False)])]
    own = own if own[0][1] else []
    backbone, head = getattr(model, "backbone", None), getattr(model, "head", None)
    if isinstance(backbone, nn.Module) and isinstance(head, nn.Module):
        return own + _blocks_of(backbone, "backbone"), _blocks_of(head, "head")
    children = _param_children(model)
    if len(children) < 2:
        blocks = _blocks_of(model, "")
        return blocks[:-1], blocks[-1:]
    *body, (head_name, head_module) = children  # the last child is the head (HF: `classifier`, `cls`)
    body_blocks = _blocks_of(body[0][1], body[0][0]) if len(body) == 1 else _children_blocks(body, "", [])
    return own + body_blocks, _blocks_of(head_module, head_name)


def model_blocks(model: nn.Module) -> Blocks:
    """Ordered blocks, bottom → top: [(block name, [parameter-name prefixes])].

    A Classifier (`.backbone` + `.head`) gives the backbone's stages then the head's layers: DigitsCNN →
    backbone.conv1 (+bn1), backbone.conv2 (+bn2), head.net.0, head.net.2, head.net.4; torchvision ResNet →
    backbone.net.conv1 (the stem, + bn1), backbone.net.layer1..4, head.net.0. Any other module: its last
    top-level parameterised child is the head, the children before it the backbone (a lone wrapper such as
    Hugging Face's `bert` is looked through: bert.embeddings, bert.encoder.layer.0.., bert.pooler, classifier).
    Within each: parameterised children in order, lone wrappers looked through, a ModuleList stack gives one
    block per layer, a normalisation layer joins the block before it. Every parameter lies in exactly one block."""
    backbone, head = split_blocks(model)
    return backbone + head


def block_parameter_names(model: nn.Module) -> list[tuple[str, list[str]]]:
    """`model_blocks` with full parameter names instead of prefixes."""
    names = [n for n, _ in model.named_parameters()]
    return [(block, [n for n in names if _in_block(n, prefixes)]) for block, prefixes in model_blocks(model)]


def freeze_patterns(blocks: Blocks, names: Iterable[str] = ()) -> list[str]:
    """fnmatch patterns (config.freeze) that match exactly the parameters of these blocks: "<module>.*" per
    module prefix; a prefix that is itself a parameter name (in `names`: a model's own parameter) verbatim."""
    params = set(names)
    return [p if p in params else f"{p}.*" for _, prefixes in blocks for p in prefixes]


# ---------------------------------------------------------------------------------------------- learning rates
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


# ---------------------------------------------------------------------------------------------- gradual unfreezing
class GradualUnfreezing:
    """Howard & Ruder 2018 (ULMFiT), sec. 3.2: train the head first, then unfreeze the next backbone block from
    the top every `every` steps, until everything trains.

    Stage s = min(step // every, number of backbone blocks): the head and the top s backbone blocks train.
    Only `managed` parameters are touched (the trainer passes those in its optimizer, so parameters frozen by
    `config.freeze` stay frozen). Which parameters train is a pure function of the step, so a resumed run
    unfreezes exactly where an uninterrupted one does."""

    def __init__(self, model: nn.Module, every: int, managed: Iterable[torch.Tensor] | None = None) -> None:
        if not isinstance(every, int) or every <= 0:
            raise ValueError(f"gradual unfreezing needs a period of >= 1 steps, got {every!r}")
        self.every = every
        backbone, head = split_blocks(model)
        self.blocks = [b for b, _ in head] + [b for b, _ in reversed(backbone)]  # in order of unfreezing
        self.num_stages = len(backbone) + 1
        stage_of: dict[str, int] = {}
        for _, prefixes in head:
            stage_of.update({p: 0 for p in prefixes})
        for s, (_, prefixes) in enumerate(reversed(backbone), start=1):
            stage_of.update({p: s for p in prefixes})
        wanted = None if managed is None else {id(p) for p in managed}
        self.params: list[tuple[str, torch.Tensor, int]] = []
        for name, p in model.named_parameters():
            if (wanted is None and p.requires_grad) or (wanted is not None and id(p) in wanted):
                stage = next(s for prefix, s in stage_of.items() if _in_block(name, [prefix]))
                self.params.append((name, p, stage))
        self._head_count = len(head)

    def stage(self, step: int) -> int:
        return min(step // self.every, self.num_stages - 1)

    def trainable_blocks(self, step: int) -> list[str]:
        """Names of the blocks that train at `step` (before `config.freeze`)."""
        return self.blocks[: self._head_count + self.stage(step)]

    def apply(self, step: int) -> bool:
        """Set requires_grad for `step`; True when it changed (the caller re-runs set_train_mode, so BatchNorm
        of still-frozen blocks stays in eval mode and unfrozen ones start updating their statistics)."""
        stage, changed = self.stage(step), False
        for _, p, s in self.params:
            want = s <= stage
            if p.requires_grad != want:
                p.requires_grad_(want)
                changed = True
        return changed


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


def config_model(config: TrainConfig, model: nn.Module | None = None) -> nn.Module:
    """`model`, or the image classifier `config` builds, on the meta device (no weights allocated, nothing
    downloaded): what strategies count blocks of."""
    from .models import build_model

    if model is not None:
        return model
    task = getattr(config, "task", "image_classification")
    if task != "image_classification":
        raise ValueError(f"this strategy counts the model's blocks: for task '{task}' pass model=<a built model>")
    kwargs = {k: v for k, v in config.backbone_kwargs.items() if k != "weights"}  # never download for names
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

    init_from: the source-trained run (default: config.init_from); not needed for a pretrained torchvision
    backbone (backbone_kwargs["weights"]). blocks: k for "partial". unfreeze_every: N for "gradual" (default
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
        if config.backbone_kwargs.get("weights") is not None:
            out["backbone_kwargs"] = {k: v for k, v in config.backbone_kwargs.items() if k != "weights"}
        return out
    source = init_from if init_from is not None else config.init_from
    if source is None and config.backbone_kwargs.get("weights") is None:
        raise ValueError(f"strategy '{strategy}' transfers a trained model: give init_from (the source run) "
                         "or a pretrained backbone (backbone_kwargs weights)")
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
    if config.init_from is None and config.backbone_kwargs.get("weights") is None:
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
