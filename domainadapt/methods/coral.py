"""Deep CORAL (Sun & Saenko 2016, ECCV workshops, "Deep CORAL", eq. 1): source cross-entropy +
λ · ‖C_s − C_t‖²_F / (4 d²), C the (n−1)-normalised feature covariance of each domain's batch."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Method, MethodContext, StepOutput
from .registry import register_method


def coral_loss(f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
    """‖C_s − C_t‖²_F / (4 d²); 0 exactly when the two batch covariances are equal.

    Computed in the promoted dtype of the two inputs, so float64 features give a float64 loss and float32 a
    float32 one; half/bfloat16 features (autocast) are computed and returned in float32, where the covariance
    does not lose its precision.
    """
    d = f_s.shape[1]
    dtype = torch.promote_types(torch.promote_types(f_s.dtype, f_t.dtype), torch.float32)
    c_s = torch.cov(f_s.to(dtype).T)
    c_t = torch.cov(f_t.to(dtype).T)
    return (c_s - c_t).pow(2).sum() / (4 * d * d)


@register_method
class CORAL(Method):
    name = "coral"

    def __init__(self, context: MethodContext, weight: float = 1.0) -> None:
        super().__init__(context)
        self.weight = weight

    def losses(self, out: StepOutput, model: nn.Module) -> dict[str, torch.Tensor]:
        return {"cls": F.cross_entropy(out.logits_s, out.y_s), "coral": self.weight * coral_loss(out.f_s, out.f_t)}
