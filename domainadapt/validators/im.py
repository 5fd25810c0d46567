"""im: information maximisation, H(mean_i p_i) − mean_i H(p_i) over the target training inputs (nats; Shi & Sha
2012, ICML, "Information-Theoretical Learning of Discriminative Clusters for Unsupervised Domain Adaptation";
SHOT's L_ent + L_div, Liang et al. 2020, eqs. 1–2; a validator in Musgrave et al. 2022). Higher is better:
confident predictions (low mean entropy) that still spread over the classes (high entropy of the mean), so a
model that predicts one class everywhere scores low, unlike `entropy`."""

from __future__ import annotations

from .base import ValidationInputs, Validator, as_float64, entropy_rows
from .registry import register_validator


@register_validator
class InformationMaximisation(Validator):
    name = "im"
    needs = frozenset({"target_logits"})

    def score(self, inputs: ValidationInputs) -> float:
        p = as_float64(inputs.target_logits).softmax(1)
        return float(entropy_rows(p.mean(0, keepdim=True))[0] - entropy_rows(p).mean())
