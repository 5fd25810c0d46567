"""Source only (ERM on source labels): the lower-bound row of every adaptation table."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Method, StepOutput
from .registry import register_method


@register_method
class SourceOnly(Method):
    name = "source_only"
    uses_target = False

    def losses(self, out: StepOutput, model: nn.Module) -> dict[str, torch.Tensor]:
        return {"cls": F.cross_entropy(out.logits_s, out.y_s)}
