"""mmd: −MMD² between the features of held-out source rows and of target training inputs (Gretton et al. 2012,
JMLR, eq. 3: the unbiased estimator, one Gaussian kernel with the median-heuristic bandwidth, both
divergence.mmd2's defaults), each side subsampled to at most `max_samples` rows with a seeded generator.
Higher (closer feature distributions) is better; aligned features can still be wrongly classified, so this
measures transferability, not accuracy."""

from __future__ import annotations

import torch

from ..divergence.mmd import mmd2
from .base import ValidationInputs, Validator, ValidatorError, as_float64
from .registry import register_validator


@register_validator
class FeatureMMD(Validator):
    name = "mmd"
    needs = frozenset({"source_features", "target_features"})

    def __init__(self, max_samples: int = 1000, seed: int = 0) -> None:
        if max_samples < 2:
            raise ValidatorError(f"validator 'mmd': max_samples must be >= 2, got {max_samples}")
        self.max_samples, self.seed = max_samples, seed

    def _sample(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return x if len(x) <= self.max_samples else x[torch.randperm(len(x), generator=g)[: self.max_samples]]

    def score(self, inputs: ValidationInputs) -> float:
        g = torch.Generator().manual_seed(self.seed)
        xs, xt = self._sample(as_float64(inputs.source_features), g), self._sample(as_float64(inputs.target_features), g)
        return -float(mmd2(xs, xt))
