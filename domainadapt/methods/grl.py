"""The gradient reversal layer (Ganin & Lempitsky 2015; Ganin et al. 2016, JMLR, sec. 4.2, eq. 13), its
coefficient schedule, and a warm start that holds the adversary off until the source classifier has started.

Forward: identity. Backward: the incoming gradient times −coeff. Placed between the feature extractor and a
domain discriminator, one backward pass trains the discriminator to tell the domains apart and the features
to make that impossible.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..distributed import DistContext


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, coeff: float | torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return grad.neg() * ctx.coeff, None


def grad_reverse(x: torch.Tensor, coeff: float | torch.Tensor = 1.0) -> torch.Tensor:
    """Identity forward; backward multiplies the gradient by −coeff (a float, or a 0-d tensor on x's device,
    so a coefficient computed on the GPU costs no host sync)."""
    return _GradReverse.apply(x, coeff.detach() if isinstance(coeff, torch.Tensor) else float(coeff))


def grl_coefficient(progress: float, gamma: float = 10.0, max_coeff: float = 1.0) -> float:
    """λ_p = max · (2 / (1 + exp(−γ p)) − 1), p ∈ [0, 1] the fraction of *planned* training done
    (Ganin et al. 2016, sec. 5.2.2, γ = 10): 0 at the start, when features are still noise, → max."""
    return max_coeff * (2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0)


class AdversaryWarmStart(nn.Module):
    """The adversary's coefficient is 0 until the source classifier has started learning, then λ_p ramps over
    the rest of training: p is re-measured from the step the gate opened, p' = (p − p_open) / (1 − p_open).

    The gate opens when an exponential moving average (factor `smoothing`) of the per-step source cross-entropy
    falls below `start_below` · ln K (K classes: ln K is the loss at chance); `start_below` ≥ 1 opens it at step 0,
    which is the paper's schedule exactly. Why: λ_p follows the fraction of *planned* steps, so on a short run
    the reversed domain gradient is strong while a slow-to-start source (syndigits: 50–75 steps at chance even
    without an adversary) is still at chance, and the source task then never starts (see `dann.py` for the
    measurements). The gate uses source labels only.

    One observation per optimizer step, of the whole global batch: the losses of a step's `micro_steps`
    forwards (gradient accumulation) are summed, and at its last one their mean is averaged over the processes
    (an all-reduce under torch.distributed) and folded into the average; so 1 process, N processes and gradient
    accumulation open the gate at the same step. All state is buffers (the average, the opening point), so it is
    checkpointed with the method (checkpoints fall between optimizer steps, where nothing is pending) and a
    resumed run opens it where the uninterrupted one does; everything stays on the batch's device (no host
    sync)."""

    def __init__(self, num_classes: int, start_below: float = 0.5, smoothing: float = 0.9,
                 micro_steps: int = 1) -> None:
        super().__init__()
        if micro_steps < 1:
            raise ValueError(f"micro_steps must be >= 1, got {micro_steps}")
        self.micro_steps, self._calls = int(micro_steps), 0
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        if start_below <= 0.0:
            raise ValueError(f"start_below must be > 0 (a fraction of the chance loss ln K), got {start_below}")
        self.threshold = start_below * math.log(max(num_classes, 2))
        self.always_open = start_below >= 1.0
        self.smoothing = smoothing
        # −1 = not yet (a finite sentinel: the trainer checks every buffer is finite before each checkpoint)
        self.register_buffer("loss_average", torch.tensor(-1.0))
        self.register_buffer("opened_at", torch.tensor(0.0 if self.always_open else -1.0))  # progress p at opening
        self.register_buffer("pending_sum", torch.tensor(0.0), persistent=False)  # this step's forwards so far

    def forward(self, source_loss: torch.Tensor, progress: float, gamma: float = 10.0,
                max_coeff: float = 1.0) -> torch.Tensor:
        """This forward's coefficient (a 0-d tensor); call once per training forward (micro-batch) with its
        source cross-entropy."""
        if self.training and not self.always_open:
            self._observe(source_loss.detach().float(), progress)
        opened = self.opened_at >= 0
        start = self.opened_at.clamp_min(0.0)
        p = ((progress - start) / (1.0 - start).clamp_min(1e-8)).clamp(0.0, 1.0)
        coeff = max_coeff * (2.0 / (1.0 + torch.exp(-gamma * p)) - 1.0)
        return torch.where(opened, coeff, torch.zeros_like(coeff))

    def _observe(self, loss: torch.Tensor, progress: float) -> None:
        self.pending_sum.add_(loss)
        self._calls += 1
        if self._calls % self.micro_steps:
            return  # more forwards of this optimizer step to come
        mean = DistContext.current().all_reduce_mean(self.pending_sum / self.micro_steps)
        self.pending_sum.zero_()
        average = torch.where(self.loss_average < 0, mean,
                              self.smoothing * self.loss_average + (1.0 - self.smoothing) * mean)
        self.loss_average.copy_(average)
        opens = (self.opened_at < 0) & (average < self.threshold)
        self.opened_at.copy_(torch.where(opens, torch.full_like(average, progress), self.opened_at))

