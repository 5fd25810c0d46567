"""Causal-LM continued pretraining on domain text (DAPT / TAPT for decoders), through the shared trainer.

    task="causal_lm", method="causal_lm"
    backbone     a local folder or a hub name of an AutoModelForCausalLM (GPT-2, Llama-class, ...)
    target       the training text: corpus specs joined by "+" (`text.sources`), e.g. "dictd:foldoc+dictd:jargon"
    task_kwargs  `CausalLMOptions`
Held-out sets as masked_lm's (`masked_lm.heldout_texts`): the domain's and, with `general`, general text's, scored
by the mean next-token loss over their tokens and its perplexity; `general` is also the EWC Fisher's data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..inference import run_loop
from ..models.registry import backbone_modality, resolve_text_backbone
from ..options import parse_options
from ..regularizers.fisher import FisherData
from ..text.clm import CausalBlocks, causal_lm_loss, load_causal_lm, predicted_tokens
from ..text.mlm import check_pretrained
from ..text.sources import TextTaskError, check_corpus_spec, token_blocks
from ..train.checkpoint import load_model_weights
from ..train.config import TrainConfig
from . import register_task
from .base import Task, TaskSetup
from .masked_lm import LanguageModelOptions, TokenMeanLoss, check_text_method, heldout_texts, training_texts


@dataclass(frozen=True)
class CausalLMOptions(LanguageModelOptions):
    """`masked_lm.LanguageModelOptions`: a causal LM has no masking option."""


class CausalLMLoss(TokenMeanLoss):
    """Held-out next-token loss over the predicted tokens, and its perplexity."""

    metric = "lm_loss"

    def forward(self, model: nn.Module, x: dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        return causal_lm_loss(model, x["input_ids"], x["attention_mask"], reduction="sum")

    def tokens(self, labels: torch.Tensor) -> torch.Tensor:
        return predicted_tokens(labels)


def heldout_causal_lm_losses(backbone: str, task_kwargs: dict[str, Any], target: str, *,
                             device: str = "cpu") -> dict[str, float]:
    """The held-out next-token losses of a causal LM before any continued pretraining (the "base" row)."""
    options = parse_options(CausalLMOptions, task_kwargs, where="task 'causal_lm'", error=TextTaskError,
                            noun="task_kwargs")
    model, tokenizer = load_causal_lm(resolve_text_backbone(backbone), device=device)
    return {name: run_loop(model, CausalBlocks(token_blocks(texts, tokenizer, options.block_size)[: options.heldout_blocks],
                                               labelled=True), CausalLMLoss(), device=device, batch_size=32)["lm_loss"]
            for name, texts in heldout_texts(options, target).items()}


def causal_lm_nll(model: nn.Module, x: dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    """The next-token loss of one block: its −log-likelihood for the Fisher."""
    return causal_lm_loss(model, x["input_ids"], x.get("attention_mask"))


@register_task
class CausalLM(Task):
    name = "causal_lm"
    classifies = False  # a language model: no class predictions for validators to score
    Options = CausalLMOptions
    error = TextTaskError

    def check(self, config: TrainConfig, options: CausalLMOptions) -> None:
        check_text_method(config, "causal_lm")
        if backbone_modality(config.backbone) != "text" or config.backbone == "minilm":
            raise TextTaskError(f"task 'causal_lm' needs a causal LM backbone (a folder or a hub name of an "
                                f"AutoModelForCausalLM), not '{config.backbone}'")
        check_pretrained(resolve_text_backbone(config.backbone))
        check_corpus_spec(config.target, "target")
        if options.general:
            check_corpus_spec(options.general, "task_kwargs.general")
        if options.block_size < 2:
            raise TextTaskError(f"task_kwargs.block_size must be at least 2 (a token and its successor), not "
                                f"{options.block_size}")

    def build_model(self, config: TrainConfig, options: CausalLMOptions, info: dict[str, int]) -> nn.Module:
        return load_causal_lm(resolve_text_backbone(config.backbone))[0]

    def build(self, config: TrainConfig, options: CausalLMOptions, init_state: dict[str, Any] | None) -> TaskSetup:
        model, tokenizer = load_causal_lm(resolve_text_backbone(config.backbone))
        if init_state is not None:
            load_model_weights(model, init_state, config.init_from)
        texts = training_texts(config, options)
        train = CausalBlocks(token_blocks(texts, tokenizer, options.block_size))
        eval_sets = {name: CausalBlocks(token_blocks(t, tokenizer, options.block_size)[: options.heldout_blocks],
                                        labelled=True)
                     for name, t in heldout_texts(options, config.target).items()}
        general = eval_sets.get("general_heldout")
        hidden = getattr(model.config, "hidden_size", None) or getattr(model.config, "n_embd", 0)
        return TaskSetup(
            model=model, source_train=None, target_train=train, eval_sets=eval_sets,
            fisher=None if general is None else FisherData(general, nll=causal_lm_nll, logits=None, vectorize=False),
            no_fisher_reason="EWC on the causal-LM task needs general text: set task_kwargs.general",
            measure=CausalLMLoss, feature_dim=int(hidden), num_classes=int(model.config.vocab_size),
            sizes={"target_train_blocks": len(train), "target_train_docs": len(texts),
                   **{k: len(v) for k, v in eval_sets.items()}},
            input_contract={"kind": "causal_lm", "tokenizer": config.backbone, "block_size": options.block_size,
                            "inputs": ["input_ids", "attention_mask"], "outputs": "next-token logits over the vocabulary"})
