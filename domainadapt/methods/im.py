"""IM: information maximisation on the target predictions (Shi & Sha 2012, ICML, "Information-Theoretical
Learning of Discriminative Clusters for Unsupervised Domain Adaptation"; the form used by SHOT, Liang et al. 2020,
ICML, "Do We Really Need to Access the Source Data?", L_ent + L_div, eq. 5 as cited in issue #17, check).

Losses: source cross-entropy + λ · (mean_i H(p_i) − H(mean_i p_i)), p = softmax(target logits). The first term
makes each prediction confident, the second (diversity) keeps the batch's predictions spread over the classes, so
the minimiser is not "everything is one class". `diversity=False` leaves entropy minimisation alone. λ = 1 (SHOT
weights the two IM terms equally, with unit weight). Anchor: REFERENCES.md has no IM-alone number (SHOT's
numbers are for the source-free setting with pseudo-labels).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Method, MethodContext, StepOutput
from .mcc import entropy
from .registry import register_method


def im_loss(logits_t: torch.Tensor, diversity: bool = True) -> torch.Tensor:
    p = logits_t.float().softmax(1)
    loss = entropy(p).mean()
    if diversity:
        loss = loss - entropy(p.mean(0, keepdim=True)).squeeze(0)
    return loss


@register_method
class IM(Method):
    name = "im"

    def __init__(self, context: MethodContext, weight: float = 1.0, diversity: bool = True) -> None:
        super().__init__(context)
        self.weight, self.diversity = weight, diversity

    def losses(self, out: StepOutput, model: nn.Module) -> dict[str, torch.Tensor]:
        return {"cls": F.cross_entropy(out.logits_s, out.y_s),
                "im": self.weight * im_loss(out.logits_t, self.diversity)}
