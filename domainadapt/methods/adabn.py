"""AdaBN: adaptive batch normalisation (Li et al. 2016, arXiv 1603.04779 / Pattern Recognition 2018, "Revisiting
Batch Normalization For Practical Domain Adaptation", Alg. 1: for every BatchNorm layer, replace the source
statistics by the mean and variance of its input over ALL target images).

No training (`trains = False`): at step 0 the trainer calls `refresh` once, which runs the trained source model
(`init_from`) over the unlabelled target training set in train mode with a cumulative average
(`torch.optim.swa_utils.update_bn`, torch's own implementation of exactly this estimate, so it is not rewritten
here), then evaluates. Deeper layers' statistics are taken on the outputs of the layers before them as they
normalise batches during that pass, as in update_bn. The result records "steps": 0.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from .base import Method, MethodContext, StepOutput, TargetPass
from .registry import register_method


@register_method
class AdaBN(Method):
    name = "adabn"
    uses_source = False
    trains = False
    needs_trained_model = True

    def __init__(self, context: MethodContext) -> None:
        super().__init__(context)

    def refresh(self, model: nn.Module, target: TargetPass) -> None:
        if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
            raise ValueError("method 'adabn' re-estimates BatchNorm statistics, and this model has no BatchNorm "
                             "(for the digits CNN: --backbone-arg batch_norm=true)")
        update_bn((x for _, x in target.batches()), model)

    def losses(self, out: StepOutput, model: nn.Module) -> dict[str, torch.Tensor]:
        raise RuntimeError("method 'adabn' does not train (trains = False): the trainer never calls its losses")
