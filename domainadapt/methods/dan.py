"""DAN: deep adaptation network (Long et al. 2015, ICML, "Learning Transferable Features with Deep Adaptation
Networks", eq. 8): source cross-entropy + λ · multi-kernel MMD² between source and target features.

The MMD is `domainadapt.divergence.mmd2` with the DAN kernel family (5 Gaussian kernels, bandwidths σ²·{¼, ½, 1,
2, 4} around the median heuristic, averaged), unbiased estimator; optionally also on the logits (DAN adapts
several task-specific layers).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..divergence import mmd2
from .base import Method, MethodContext, StepOutput
from .registry import register_method


@register_method
class DAN(Method):
    name = "dan"

    def __init__(self, context: MethodContext, weight: float = 1.0, estimator: str = "unbiased",
                 on_logits: bool = False) -> None:
        super().__init__(context)
        self.weight, self.estimator, self.on_logits = weight, estimator, on_logits

    def losses(self, out: StepOutput, model: nn.Module) -> dict[str, torch.Tensor]:
        mmd = mmd2(out.f_s.float(), out.f_t.float(), kernel="dan", estimator=self.estimator, check_finite=False)
        if self.on_logits:
            mmd = mmd + mmd2(out.logits_s.float(), out.logits_t.float(), kernel="dan", estimator=self.estimator,
                             check_finite=False)
        return {"cls": F.cross_entropy(out.logits_s, out.y_s), "mmd": self.weight * mmd}
