"""Next-token objective as a method of the shared trainer: continued pretraining of a causal LM (DAPT / TAPT).

The decoder form of Gururangan et al. 2020's continued pretraining: keep training the LM with its own objective,
the mean −log p(x_t | x_<t) over the target stream's token blocks (`domainadapt.text.clm.causal_lm_loss`, equal to
the Hugging Face model's `labels=` loss). The labels are the text itself, so this is unsupervised with respect to
the task. Use with `task="causal_lm"`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..text.clm import causal_lm_loss
from .base import Method
from .registry import register_method


@register_method
class CausalLM(Method):
    name = "causal_lm"
    uses_source = False
    uses_target = True

    def compute_losses(self, model: nn.Module, x_s: Any, y_s: torch.Tensor | None, x_t: Any,
                       y_t: torch.Tensor | None, progress: float, step: int) -> dict[str, torch.Tensor]:
        if not isinstance(x_t, dict) or "input_ids" not in x_t:
            raise TypeError("causal_lm needs token blocks (dicts with input_ids, attention_mask): run it with "
                            "task='causal_lm'")
        return {"lm": causal_lm_loss(model, x_t["input_ids"], x_t.get("attention_mask"))}
