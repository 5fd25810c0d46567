"""Parts of a model that methods address by role: the normalisation layers' affine parameters (TENT, AdaBN) and
the source hypothesis, the last linear layer of the head (SHOT freezes it)."""

from __future__ import annotations

from torch import nn

NORM_LAYERS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm)


def norm_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, NORM_LAYERS)]


def norm_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The affine weight and bias of every normalisation layer (BatchNorm, LayerNorm, GroupNorm, InstanceNorm)."""
    return [p for m in norm_layers(model) for p in m.parameters(recurse=False)]


def hypothesis_layer(model: nn.Module, method: str) -> nn.Linear:
    """The last nn.Linear of `model.head`: the classifier proper, whose input is the method's feature space."""
    head = getattr(model, "head", None)
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)] if isinstance(head, nn.Module) else []
    if not linears:
        raise ValueError(f"method '{method}' needs a model whose `head` ends in an nn.Linear (the hypothesis); "
                         f"{type(model).__name__} has none")
    return linears[-1]
