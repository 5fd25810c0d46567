"""entropy: −mean_i H(softmax(z_i)) over the target training inputs (nats). Higher (more confident target
predictions) is better; the score entropy-minimisation methods optimise (Grandvalet & Bengio 2005; as a
validator: Morerio et al. 2018, ICLR, "Minimal-Entropy Correlation Alignment", sec. 4; Musgrave et al. 2022).
It rewards confident mistakes as much as confident right answers."""

from __future__ import annotations

from .base import ValidationInputs, Validator, as_float64, entropy_rows
from .registry import register_validator


@register_validator
class Entropy(Validator):
    name = "entropy"
    needs = frozenset({"target_logits"})

    def score(self, inputs: ValidationInputs) -> float:
        return -float(entropy_rows(as_float64(inputs.target_logits).softmax(1)).mean())
