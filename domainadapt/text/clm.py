"""Causal (next-token) language modelling: the loss, token blocks, and loading any AutoModelForCausalLM.

Continued pretraining of a decoder on domain text is DAPT's modern form (Gururangan et al. 2020 continue RoBERTa's
masked LM; the same recipe applies to GPT-2 or Llama-class models with their own objective): minimise the mean
−log p(x_t | x_<t) over the tokens of the domain's text. The loss here equals the Hugging Face model's own
`labels=` loss (logits shifted by one, mean over predicted tokens), with padding (attention_mask 0) left out.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .mlm import MODEL_FOLDER_HINT, TextModelError, from_pretrained_kwargs, one_line


def causal_lm_loss(model: nn.Module, input_ids: Tensor, attention_mask: Tensor | None = None, *,
                   reduction: str = "mean") -> Tensor:
    """Cross-entropy of every next token given the ones before it: logits at positions 0..T-2 against tokens
    1..T-1; a target position whose attention_mask is 0 (padding) is not scored. reduction="sum" gives the sum
    (for token-weighted means); `predicted_tokens` counts what it is summed over."""
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', not {reduction!r}")
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
    targets = input_ids[:, 1:]
    if attention_mask is not None:
        targets = targets.masked_fill(attention_mask[:, 1:] == 0, -100)
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
                           ignore_index=-100, reduction=reduction)


def predicted_tokens(input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
    """How many next tokens `causal_lm_loss` scores in this batch."""
    if attention_mask is None:
        return torch.tensor(input_ids.shape[0] * (input_ids.shape[1] - 1), device=input_ids.device)
    return (attention_mask[:, 1:] != 0).sum()


class CausalBlocks:
    """Token blocks of equal length (no padding); get_batch → ({"input_ids", "attention_mask"}, None) for
    training, or (inputs, input_ids) as labels for held-out scoring when `labelled`."""

    def __init__(self, rows: list[dict[str, Tensor]], labelled: bool = False) -> None:
        if not rows:
            raise ValueError("causal-LM blocks: the dataset is empty")
        self.input_ids = torch.stack([r["input_ids"] for r in rows])
        self.labelled = labelled

    def __len__(self) -> int:
        return len(self.input_ids)

    def get_batch(self, index: Tensor) -> tuple[dict[str, Tensor], Tensor | None]:
        ids = self.input_ids[index]
        inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        return inputs, (ids if self.labelled else None)


def load_causal_lm(name_or_path: str | os.PathLike, *, device: str | torch.device | None = None):
    """(AutoModelForCausalLM, AutoTokenizer) from a local folder or a hub name; trust_remote_code=False. A tokenizer
    without a pad token gets its end-of-text token as pad (GPT-2 ships none)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = from_pretrained_kwargs(name_or_path)
    try:
        model = AutoModelForCausalLM.from_pretrained(str(name_or_path), **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(str(name_or_path), **kwargs)
    except (OSError, ValueError) as err:
        raise TextModelError(f"cannot load '{name_or_path}' as a causal LM (AutoModelForCausalLM and its tokenizer): "
                             f"{one_line(err)}" + ("" if kwargs["local_files_only"] else f"; {MODEL_FOLDER_HINT}")) from None
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    if device is not None:
        model = model.to(device)
    return model, tokenizer
