"""A model's blocks: the units transfer strategies count (freeze the bottom k, unfreeze one more every N steps,
decay the learning rate with depth). Ordered bottom → top, each a list of module prefixes of parameter names;
every parameter lies in exactly one block (`model_blocks`).

A module whose layout the generic rules would get wrong says its own: a method `transfer_blocks() -> Blocks`
(prefixes relative to the module) is used instead of the rules wherever the module is met (the UDA bottleneck,
bottleneck.py: the wrapped network's stages, then the bottleneck as one more block on top)."""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)

Blocks = list[tuple[str, list[str]]]


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


def _declared(module: nn.Module, prefix: str) -> Blocks | None:
    """The module's own `transfer_blocks()`, prefixed, or None when it has none."""
    declare = getattr(module, "transfer_blocks", None)
    if not callable(declare):
        return None
    return [(_join(prefix, name), [_join(prefix, p) for p in prefixes]) for name, prefixes in declare()]


def blocks_of(module: nn.Module, prefix: str = "") -> Blocks:
    """The blocks of one module, bottom → top, named under `prefix`: its `transfer_blocks()` if it declares them,
    else its top-level parameterised children in order (through lone wrappers such as `net`), a normalisation
    layer joining the block of the layer before it (conv1 + bn1)."""
    declared = _declared(module, prefix)
    if declared is not None:
        return declared
    children = _param_children(module)
    while len(children) == 1 and not any(True for _ in module.parameters(recurse=False)) \
            and not isinstance(children[0][1], nn.ModuleList) and _param_children(children[0][1]):
        name, module = children[0]
        prefix = _join(prefix, name)
        declared = _declared(module, prefix)
        if declared is not None:
            return declared
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
        return own + blocks_of(backbone, "backbone"), blocks_of(head, "head")
    children = _param_children(model)
    if len(children) < 2:
        blocks = blocks_of(model, "")
        return blocks[:-1], blocks[-1:]
    *body, (head_name, head_module) = children  # the last child is the head (HF: `classifier`, `cls`)
    body_blocks = blocks_of(body[0][1], body[0][0]) if len(body) == 1 else _children_blocks(body, "", [])
    return own + body_blocks, blocks_of(head_module, head_name)


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
