"""MCD: maximum classifier discrepancy (Saito et al. 2018, CVPR, "Maximum Classifier Discrepancy for Unsupervised
Domain Adaptation", sec. 3.2, eq. 1 (discrepancy), steps A–C (eq. 2–4); digits in Table 1, num_k = 4 for them).

Two classifiers on one feature generator G: F1 is the model's own head (what is evaluated and exported), F2 a
freshly initialised copy of it owned by the method (`MethodContext.new_head`). d(p1, p2) = mean_k |p1_k − p2_k|
averaged over the target batch. Each training step makes three kinds of update on the same batches
(`update_phases`), which is why MCD is not one loss:
    A "source":      min over G, F1, F2 of  CE(F1) + CE(F2) on source;
    B "classifiers": min over F1, F2 of     CE(F1) + CE(F2) on source − w · d on target  (G fixed);
    C "generator":   min over G of          w · d on target, `num_k` times                  (F1, F2 fixed).
Cost: 2 + num_k forward/backward passes per step (6× source-only at num_k = 4).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Method, MethodContext, StepOutput
from .registry import register_method


def classifier_discrepancy(logits_1: torch.Tensor, logits_2: torch.Tensor) -> torch.Tensor:
    """Eq. 1: mean over the batch and the K classes of |softmax(logits_1) − softmax(logits_2)|."""
    return (logits_1.float().softmax(1) - logits_2.float().softmax(1)).abs().mean()


@register_method
class MCD(Method):
    name = "mcd"

    def __init__(self, context: MethodContext, weight: float = 1.0, num_k: int = 4) -> None:
        super().__init__(context)
        if context.new_head is None:
            raise ValueError("method 'mcd' needs a model with a `head` to copy as its second classifier")
        if num_k < 1:
            raise ValueError(f"method 'mcd': num_k must be >= 1, got {num_k}")
        self.weight, self.num_k = weight, int(num_k)
        self.second_head = context.new_head()

    def update_phases(self) -> tuple[str, ...]:
        return ("source", "classifiers") + ("generator",) * self.num_k

    def phase_parameters(self, phase: str | None, model: nn.Module) -> list[nn.Parameter] | None:
        heads = list(model.head.parameters()) + list(self.second_head.parameters())
        if phase == "classifiers":
            return heads
        if phase == "generator":
            owned = {id(p) for p in heads}
            return [p for p in model.parameters() if id(p) not in owned]
        return None  # "source": everything

    def losses(self, out: StepOutput, model: nn.Module) -> dict[str, torch.Tensor]:
        second_t = self.second_head(out.f_t)
        discrepancy = classifier_discrepancy(out.logits_t, second_t)
        self.report("discrepancy", discrepancy)
        if out.phase == "generator":
            return {"disc": self.weight * discrepancy}
        source = {"cls1": F.cross_entropy(out.logits_s, out.y_s),
                  "cls2": F.cross_entropy(self.second_head(out.f_s), out.y_s)}
        if out.phase == "classifiers":
            source["disc"] = -self.weight * discrepancy
        return source
