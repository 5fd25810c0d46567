"""Masked-LM objective as a method of the shared trainer: continued pretraining (DAPT / TAPT).

Gururangan et al. 2020 ("Don't Stop Pretraining", ACL), §3–4: keep training a pretrained LM with its masked-LM
loss on unlabeled text of the target domain (DAPT) or of the task (TAPT), then fine-tune. The step's batch is
the target stream's masked blocks (input_ids with [MASK]s, attention_mask, labels = the original tokens at the
masked positions, −100 elsewhere, from Hugging Face's masking collator). The vocabulary projection is applied at
the masked positions only (`domainadapt.text.mlm.masked_lm_loss`). Those labels are the text itself, not task
labels, so this is unsupervised with respect to the task. Use with `task="masked_lm"`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..text.mlm import masked_lm_loss
from .base import Method
from .registry import register_method


@register_method
class MaskedLM(Method):
    name = "masked_lm"
    uses_source = False
    uses_target = True

    def compute_losses(self, model: nn.Module, x_s: Any, y_s: torch.Tensor | None, x_t: Any,
                       y_t: torch.Tensor | None, progress: float, step: int) -> dict[str, torch.Tensor]:
        if not isinstance(x_t, dict) or "labels" not in x_t:
            raise TypeError("masked_lm needs masked-LM batches (dicts with input_ids, attention_mask, labels): "
                            "run it with task='masked_lm'")
        return {"mlm": masked_lm_loss(model, x_t["input_ids"], x_t.get("attention_mask"), x_t["labels"])}
