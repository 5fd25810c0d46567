"""Trained on target labels: the upper-bound row of every table ("train on target", Ganin et al. 2016, Table 2).

It reads the labels of the target *training* split only; evaluation stays on the held-out target test split.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Method, StepOutput
from .registry import register_method


@register_method
class TargetOracle(Method):
    name = "target_oracle"
    uses_source = False
    uses_target_labels = True

    def losses(self, out: StepOutput, model: nn.Module) -> dict[str, torch.Tensor]:
        return {"cls": F.cross_entropy(out.logits_t, out.y_t)}
