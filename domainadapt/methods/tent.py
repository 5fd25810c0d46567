"""TENT: test-time entropy minimisation (Wang et al. 2021, ICLR, "Tent: Fully Test-Time Adaptation by Entropy
Minimization", sec. 3, L = H(ŷ) = −Σ_c p(ŷ_c) log p(ŷ_c); the online protocol of sec. 4, Table 2).

Starts from a trained source run (`init_from`), reads no source data, and updates ONLY the affine scale and
shift of the normalisation layers (`norm_parameters`); BatchNorm normalises with the statistics of the batch at
hand (train mode, as the paper's "test-time normalisation") and its running statistics follow the target stream.
Every other tensor of the model stays as it was (tests/test_method_test_time.py compares them all).

Online protocol: each target batch is predicted in the same forward that computes its entropy, i.e. BEFORE the
update on it; the trainer scores those predictions against the target stream's labels (`online_accuracy`), which
TENT never sees, as `target_online/acc`. The run's `target_test/acc` is the adapted model evaluated afterwards
on the held-out target test split (offline, with the running statistics), labelled apart in the tables.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import Method, MethodContext, StepOutput
from .im import im_loss
from .model_parts import norm_parameters
from .registry import register_method


@register_method
class TENT(Method):
    name = "tent"
    uses_source = False
    online_accuracy = True
    needs_trained_model = True

    def __init__(self, context: MethodContext, weight: float = 1.0) -> None:
        super().__init__(context)
        self.weight = weight

    def phase_parameters(self, phase: str | None, model: nn.Module) -> list[nn.Parameter]:
        params = norm_parameters(model)
        if not params:
            raise ValueError("method 'tent' updates normalisation layers, and this model has none with affine "
                             "parameters (for the digits CNN: --backbone-arg batch_norm=true)")
        return params

    def losses(self, out: StepOutput, model: nn.Module) -> dict[str, torch.Tensor]:
        return {"entropy": self.weight * im_loss(out.logits_t, diversity=False)}
