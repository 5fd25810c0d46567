"""The gradient reversal layer (Ganin & Lempitsky 2015; Ganin et al. 2016, JMLR, sec. 4.2, eq. 13).

Forward: identity. Backward: the incoming gradient times −coeff. Placed between the feature extractor and a
domain discriminator, one backward pass trains the discriminator to tell the domains apart and the features
to make that impossible.
"""

from __future__ import annotations

import math

import torch


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, coeff: float) -> torch.Tensor:  # type: ignore[override]
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return grad.neg() * ctx.coeff, None


def grad_reverse(x: torch.Tensor, coeff: float = 1.0) -> torch.Tensor:
    """Identity forward; backward multiplies the gradient by −coeff."""
    return _GradReverse.apply(x, float(coeff))


def grl_coefficient(progress: float, gamma: float = 10.0, max_coeff: float = 1.0) -> float:
    """λ_p = max · (2 / (1 + exp(−γ p)) − 1), p ∈ [0, 1] the fraction of *planned* training done
    (Ganin et al. 2016, sec. 5.2.2, γ = 10): 0 at the start, when features are still noise, → max."""
    return max_coeff * (2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0)
