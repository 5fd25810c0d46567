"""Features of named layers of any ``nn.Module``, captured with forward hooks.

Used for per-layer domain gaps (Yosinski et al. 2014: transferability falls with depth): pass the
same model over source and target data, then compare each layer's features with a divergence.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn

from ._batches import batch_inputs, iter_batches
from .errors import UnknownLayerError


def _model_device(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def _to_device(inputs: Any, device: torch.device) -> Any:
    if isinstance(inputs, Tensor):
        return inputs.to(device, non_blocking=True)
    if isinstance(inputs, dict):
        return {k: _to_device(v, device) for k, v in inputs.items()}
    return inputs


def _first_tensor(out: Any, layer: str) -> Tensor:
    if isinstance(out, Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor):
        return out[0]  # also HF ModelOutput, which indexes like a tuple
    try:
        first = out[0]
        if isinstance(first, Tensor):
            return first
    except (TypeError, KeyError, IndexError):
        pass
    raise TypeError(f"layer {layer!r} returned {type(out).__name__}, not a tensor (or a tuple starting with one)")


def extract_features(
    model: nn.Module,
    data: Any,
    layers: str | Sequence[str],
    *,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    out_device: torch.device | str = "cpu",
) -> dict[str, Tensor]:
    """Run ``model`` over ``data`` and return each named layer's output, flattened to n×d.

    ``data``: a tensor (split into ``batch_size`` rows), or a DataLoader/iterable of batches: tensors,
    (inputs, labels, ...) tuples (first item is the input), or dicts passed as ``model(**batch)``.
    ``layers``: names from ``model.named_modules()``; an unknown name raises
    :class:`~domainadapt.divergence.errors.UnknownLayerError` listing the available names.
    ``device``: where to run (the model is moved there); default: where the model's parameters are.
    The model runs in eval mode under ``torch.no_grad()``; its train/eval mode is restored and the
    hooks are removed afterwards, also on error. Tuple outputs keep their first tensor; a module that
    runs several times in one forward pass keeps its last output. Features are returned on ``out_device``.
    """
    names = [layers] if isinstance(layers, str) else list(layers)
    if not names:
        raise ValueError("layers is empty; name at least one module")
    modules = dict(model.named_modules())
    unknown = [n for n in names if n not in modules]
    if unknown:
        available = [n for n in modules if n]
        shown = ", ".join(available[:200]) + (f", ... ({len(available) - 200} more)" if len(available) > 200 else "")
        raise UnknownLayerError(f"unknown layer name(s) {unknown}; available: {shown}")
    dev = torch.device(device) if device is not None else _model_device(model)
    if device is not None:
        model.to(dev)
    out_dev = torch.device(out_device)

    current: dict[str, Tensor] = {}
    collected: dict[str, list[Tensor]] = {n: [] for n in names}

    def make_hook(name: str):
        def hook(_module: nn.Module, _inp: Any, out: Any) -> None:
            current[name] = _first_tensor(out, name).detach()

        return hook

    was_training = model.training
    handles = [modules[n].register_forward_hook(make_hook(n)) for n in names]
    try:
        model.eval()
        with torch.no_grad():
            for batch in iter_batches(data, batch_size):
                current.clear()
                inputs = _to_device(batch_inputs(batch), dev)
                if isinstance(inputs, dict):
                    model(**inputs)
                else:
                    model(inputs)
                for n in names:
                    if n not in current:
                        raise RuntimeError(f"layer {n!r} did not run in the forward pass")
                    f = current[n]
                    collected[n].append(f.reshape(f.shape[0], -1).to(out_dev))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if not collected[names[0]]:
        raise ValueError("data yielded no batches")
    return {n: torch.cat(collected[n]) for n in names}
