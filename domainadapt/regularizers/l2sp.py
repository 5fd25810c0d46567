"""L2-SP (Li et al. 2018, ICML, "Explicit Inductive Bias for Transfer Learning with Convolutional Networks",
eq. 3): (α/2)‖θ_shared − θ⁰‖² + (β/2)‖θ_new‖².

Plain weight decay pulls fine-tuned weights toward 0, i.e. away from what pretraining learned; L2-SP pulls the
shared weights toward their starting point θ⁰ instead, and decays only the layers pretraining lacks (θ_new).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .base import Regularizer, RegularizerContext, RegularizerError, register_regularizer


class L2SPError(ValueError):
    """Bad strengths, or a reference / new-parameter list that does not fit the model."""


def _key(name: str) -> str:
    return "ref__" + name.replace(".", "__")


class L2SPPenalty(nn.Module):
    """`reference`: θ⁰ by parameter name (e.g. `model.state_dict()` at the start; stored as float32 buffers, so
    checkpointed and moved with the module). Entries that are buffers of the model (BatchNorm statistics) or
    not floating point are ignored; parameters in neither `reference` nor `new_params` are not penalised."""

    def __init__(self, alpha: float, beta: float = 0.0, *, reference: dict[str, torch.Tensor],
                 new_params: list[str] | tuple[str, ...] = ()) -> None:
        super().__init__()
        for label, value in (("α", alpha), ("β", beta)):
            try:
                ok = math.isfinite(float(value)) and float(value) >= 0
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise L2SPError(f"L2-SP α and β must be >= 0, got {label}={value}")
        if not isinstance(reference, dict):
            raise L2SPError(f"L2-SP reference must be a dict {{parameter name: tensor}}, got {type(reference).__name__}")
        if isinstance(new_params, str):
            raise L2SPError("L2-SP new_params must be a list of parameter names, not one string")
        bad = [k for k, v in reference.items() if not isinstance(v, torch.Tensor)]
        if bad:
            raise L2SPError(f"L2-SP reference entry '{bad[0]}' is not a tensor")
        reference = {k: v for k, v in reference.items() if v.is_floating_point()}
        overlap = sorted(set(reference) & set(new_params))
        if overlap:
            raise L2SPError(f"L2-SP: parameter '{overlap[0]}' is both shared (in the reference) and new")
        self.alpha, self.beta = float(alpha), float(beta)
        self._shared = {_key(n): n for n in sorted(reference)}
        if len(self._shared) != len(reference):
            raise L2SPError("L2-SP: two reference names map to the same buffer name (one with '__')")
        self.new_params = sorted(new_params)
        for name in sorted(reference):
            self.register_buffer(_key(name), reference[name].detach().clone().float())

    @property
    def shared(self) -> list[str]:
        return list(self._shared.values())

    def forward(self, model: nn.Module) -> torch.Tensor:
        params = dict(model.named_parameters())
        buffers = {n for n, _ in model.named_buffers()}
        missing_new = [n for n in self.new_params if n not in params]
        if missing_new:
            raise L2SPError(f"L2-SP: new parameter '{missing_new[0]}' is not in the model")
        total_shared, total_new = None, None
        for key, name in self._shared.items():
            ref = getattr(self, key)
            p = params.get(name)
            if p is None:
                if name in buffers:
                    continue
                raise L2SPError(f"L2-SP: reference parameter '{name}' is not in the model (another model's?)")
            if p.shape != ref.shape:
                raise L2SPError(f"L2-SP: parameter '{name}' has shape {tuple(p.shape)} in the model but "
                                f"{tuple(ref.shape)} in the reference")
            term = ((p.float() - ref) ** 2).sum()
            total_shared = term if total_shared is None else total_shared + term
        for name in self.new_params:
            term = (params[name].float() ** 2).sum()
            total_new = term if total_new is None else total_new + term
        zero = torch.zeros((), device=next(iter(params.values())).device) if params else torch.zeros(())
        return 0.5 * self.alpha * (zero if total_shared is None else total_shared) + \
            0.5 * self.beta * (zero if total_new is None else total_new)


@dataclass(frozen=True)
class L2SPOptions:
    alpha: float = 0.01  # pull of the shared weights toward their starting point
    beta: float = 0.0  # weight decay of the layers pretraining lacks


@register_regularizer
class L2SP(Regularizer):
    """L2-SP toward the run's starting weights (every parameter is shared: the new head has no reference)."""

    name = "l2sp"
    Options = L2SPOptions

    def check(self, options: L2SPOptions) -> None:
        for key in ("alpha", "beta"):
            if getattr(options, key) < 0:
                raise RegularizerError(f"regularizer 'l2sp': {key} must be >= 0, got {getattr(options, key)}")

    def build(self, options: L2SPOptions, model: nn.Module, context: RegularizerContext) -> nn.Module:
        reference = {k: v.detach().clone() for k, v in model.named_parameters()}
        return L2SPPenalty(options.alpha, options.beta, reference=reference)
