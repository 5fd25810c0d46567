"""source_val: accuracy (or negative cross-entropy) on source rows held out of training — training-domain
validation (Gulrajani & Lopez-Paz 2021, ICLR, "In Search of Lost Domain Generalization", sec. 3: the
training-domain validation set). Higher is better. It sees no target data at all, so it tracks target accuracy
only as far as source and target accuracy move together."""

from __future__ import annotations

import torch.nn.functional as F

from .base import ValidationInputs, Validator, ValidatorError, as_float64
from .registry import register_validator

METRICS = ("acc", "neg_loss")


@register_validator
class SourceVal(Validator):
    name = "source_val"
    needs = frozenset({"source_logits", "source_labels"})

    def __init__(self, metric: str = "acc") -> None:
        if metric not in METRICS:
            raise ValidatorError(f"validator 'source_val': metric must be one of {list(METRICS)}, got '{metric}'")
        self.metric = metric

    def score(self, inputs: ValidationInputs) -> float:
        logits, labels = as_float64(inputs.source_logits), inputs.source_labels.long().cpu()
        if self.metric == "acc":
            return float((logits.argmax(1) == labels).double().mean())
        return -float(F.cross_entropy(logits, labels))

