"""Masked-LM continued pretraining on domain text: DAPT / TAPT (Gururangan et al. 2020, "Don't Stop
Pretraining", ACL, §3–4), through the shared trainer.

    task="masked_lm", method="masked_lm"
    backbone     "minilm" (the offline all-MiniLM-L6-v2), a local folder or a hub name of a masked LM
    target       the training text: corpus specs joined by "+" (`text.sources`), e.g. "dictd:foldoc+dictd:jargon";
                 "task:foldoc" is the subject task's own text (train + unlabeled entries: TAPT)
    task_kwargs  `MaskedLMOptions`
Held-out sets: the domain's (the subject task's test entries, or the target corpus's held-out documents) and,
with `general`, held-out general text — also the EWC Fisher's data (DAPT+EWC guards general text).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..inference import run_loop
from ..options import parse_options
from ..models.registry import backbone_modality, resolve_text_backbone
from ..regularizers.fisher import FisherData
from ..seeding import seed_everything
from ..text.corpora import mlm_collator
from ..text.mlm import (
    IGNORE_INDEX,
    FixedMaskedBlocks,
    MaskedBlocks,
    block_rows,
    check_pretrained,
    load_masked_lm,
    masked_lm_loss,
)
from ..text.sources import (
    SubjectTaskOptions,
    TextTaskError,
    check_corpus_spec,
    corpus_texts,
    is_heldout,
    subject_task,
    token_blocks,
)
from ..train.checkpoint import load_model_weights
from ..train.config import TrainConfig
from . import register_task
from .base import Task, TaskSetup


@dataclass(frozen=True)
class LanguageModelOptions:
    """What every language-model task (masked_lm, causal_lm) takes: its blocks, held-out sets and corpus sample."""

    block_size: int = 128  # tokens per training block
    general: str | None = None  # held-out general text (corpus spec): forgetting is measured on it; EWC's Fisher
    subject_task: SubjectTaskOptions | None = None  # its test entries are never trained on: the domain held-out set
    max_docs: int | None = None  # a seeded sample of the joined target corpus
    heldout_blocks: int = 256  # blocks per held-out set


@dataclass(frozen=True)
class MaskedLMOptions(LanguageModelOptions):
    whole_word_mask: bool = False  # mask whole words (the collator needs offsets)


def check_text_backbone(config: TrainConfig) -> None:
    """The backbone of a text task is a Hugging Face model; "minilm" fails naming the pip package when absent."""
    if backbone_modality(config.backbone) != "text":
        raise TextTaskError(f"task '{config.task}' needs a text backbone (\"minilm\", a folder or a hub name of a "
                            f"masked LM), not the image backbone '{config.backbone}'")
    check_pretrained(resolve_text_backbone(config.backbone))  # a missing folder or an offline hub name: one line


def check_text_method(config: TrainConfig, method: str) -> None:
    if config.method != method:
        raise TextTaskError(f"task '{config.task}' trains with method '{method}', not '{config.method}'")


class TokenMeanLoss:
    """A language model's held-out loss: the mean cross-entropy over the tokens it scores (not over batches) and its
    perplexity, the measure of `run_loop` for LM eval sets; sums all-reduced over ranks. Subclasses give `forward`
    (the summed loss of a batch), `tokens` (how many tokens it summed over) and the metric's name."""

    metric = "lm_loss"

    def __init__(self) -> None:
        self.totals: torch.Tensor | None = None  # loss sum, scored tokens

    def tokens(self, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def accumulate(self, loss: torch.Tensor, labels: torch.Tensor, index: torch.Tensor | None) -> None:
        if self.totals is None:
            self.totals = torch.zeros(2, dtype=torch.float64, device=loss.device)
        self.totals[0] += loss.double()
        self.totals[1] += self.tokens(labels)

    def compute(self, dist: Any, device: torch.device) -> dict[str, float]:
        totals = self.totals if self.totals is not None else torch.zeros(2, dtype=torch.float64, device=device)
        dist.all_reduce_sum(totals)
        mean = float(totals[0] / totals[1])
        return {self.metric: mean, "perplexity": math.exp(min(mean, 50.0))}


class MaskedLMLoss(TokenMeanLoss):
    """Held-out masked-LM loss over the masked tokens, and its perplexity."""

    metric = "mlm_loss"

    def forward(self, model: nn.Module, x: dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        return masked_lm_loss(model, x["input_ids"], x["attention_mask"], labels, reduction="sum")

    def tokens(self, labels: torch.Tensor) -> torch.Tensor:
        return (labels != IGNORE_INDEX).sum()


def evaluate_masked_lm(model: nn.Module, dataset: FixedMaskedBlocks, *, device: torch.device, batch_size: int = 64,
                       dist_ctx: Any = None, autocast_dtype: torch.dtype | None = None,
                       channels_last: bool = False) -> dict[str, float]:
    """`MaskedLMLoss` of `model` on held-out blocks, rows sharded over ranks."""
    return run_loop(model, dataset, MaskedLMLoss(), device=device, batch_size=batch_size, dist=dist_ctx,
                    autocast_dtype=autocast_dtype)


def mlm_eval_loss(model: nn.Module, dataset, collator, batch_size: int = 32, seed: int = 0) -> float:
    """Held-out masked-LM loss of a tokenized dataset (`corpora.tokenize_corpus` blocks): the blocks masked once
    by a copy of `collator` seeded with `seed` (transformers >= 5; the global RNG is untouched), then scored by
    `evaluate_masked_lm`. The same model gets the same number on every call; its train/eval mode is restored."""
    if len(dataset) == 0:
        raise ValueError("mlm_eval_loss: the dataset is empty")
    if dataclasses.is_dataclass(collator) and any(f.name == "seed" for f in dataclasses.fields(collator)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the whole-word notice, already shown for the original
            blocks = FixedMaskedBlocks(block_rows(dataset), dataclasses.replace(collator, seed=seed))
    else:  # transformers 4.x: collators draw from the global RNG
        rng_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            blocks = FixedMaskedBlocks(block_rows(dataset), collator)
        finally:
            torch.random.set_rng_state(rng_state)
    device = next(model.parameters()).device
    return evaluate_masked_lm(model, blocks, device=device, batch_size=batch_size)["mlm_loss"]


def heldout_texts(options: LanguageModelOptions, target: str) -> dict[str, list[str]]:
    """The held-out text every language-model run (masked or causal) is scored on: the domain's (the subject
    task's test entries, or the target corpus's held-out documents) and, with `general`, general text's."""
    if options.subject_task is not None:
        domain = list(subject_task(options.subject_task).test["text"])
    else:
        domain = [t for t in corpus_texts(target) if is_heldout(t)]
    sets = {"domain_heldout": domain}
    if options.general:
        sets["general_heldout"] = [t for t in corpus_texts(options.general) if is_heldout(t)]
    return sets


def training_texts(config: TrainConfig, options: LanguageModelOptions) -> list[str]:
    """The target corpus's documents a language-model run trains on: never a held-out document, never a test
    entry of the subject task (even under another headword)."""
    subject = options.subject_task
    exclude = subject_task(subject).test_headwords if subject is not None else frozenset()
    texts = [t for t in corpus_texts(config.target, exclude=exclude, subject=subject, max_docs=options.max_docs,
                                     seed=config.split_seed) if not is_heldout(t)]
    if subject is not None:
        test_texts = set(subject_task(subject).test["text"])
        texts = [t for t in texts if t not in test_texts]
    return texts


def masked_lm_eval_sets(tokenizer: Any, options: MaskedLMOptions, target: str) -> dict[str, FixedMaskedBlocks]:
    """`heldout_texts` as blocks masked once (seed 1234), so every masked-LM run scores the same tokens."""
    return {name: FixedMaskedBlocks(token_blocks(texts, tokenizer, options.block_size)[: options.heldout_blocks],
                                    mlm_collator(tokenizer, seed=1234))
            for name, texts in heldout_texts(options, target).items()}


def heldout_mlm_losses(backbone: str, task_kwargs: dict[str, Any], target: str, *,
                       device: str = "cpu", seed: int = 0) -> dict[str, float]:
    """The held-out masked-LM losses of a model before any continued pretraining (the "base" row). A head that
    the checkpoint lacks (all-MiniLM-L6-v2 ships none) is initialised from `seed`, as a seed-0 run's would be."""
    options = parse_options(MaskedLMOptions, task_kwargs, where="task 'masked_lm'", error=TextTaskError,
                            noun="task_kwargs")
    seed_everything(seed)  # as runs.run does before building the task: the same fresh head as a seed-0 run's
    model, tokenizer = load_masked_lm(resolve_text_backbone(backbone), device=device)
    sets = masked_lm_eval_sets(tokenizer, options, target)
    return {name: evaluate_masked_lm(model, data, device=torch.device(device), batch_size=32)["mlm_loss"]
            for name, data in sets.items()}


def masked_lm_nll(model: nn.Module, x: dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    """The masked-LM loss of one block: its −log-likelihood for the Fisher (labels = the masked tokens)."""
    return masked_lm_loss(model, x["input_ids"], x.get("attention_mask"), labels)


@register_task
class MaskedLM(Task):
    name = "masked_lm"
    classifies = False  # a language model: no class predictions for validators to score
    Options = MaskedLMOptions
    error = TextTaskError

    def check(self, config: TrainConfig, options: MaskedLMOptions) -> None:
        check_text_method(config, "masked_lm")
        check_text_backbone(config)
        check_corpus_spec(config.target, "target")
        if options.general:
            check_corpus_spec(options.general, "task_kwargs.general")

    def build_model(self, config: TrainConfig, options: MaskedLMOptions, info: dict[str, int]) -> nn.Module:
        return load_masked_lm(resolve_text_backbone(config.backbone))[0]

    def build(self, config: TrainConfig, options: MaskedLMOptions, init_state: dict[str, Any] | None) -> TaskSetup:
        model, tokenizer = load_masked_lm(resolve_text_backbone(config.backbone))
        if init_state is not None:
            load_model_weights(model, init_state, config.init_from)
        texts = training_texts(config, options)
        rows = token_blocks(texts, tokenizer, options.block_size, whole_word_mask=options.whole_word_mask)
        train = MaskedBlocks(rows, mlm_collator(tokenizer, whole_word_mask=options.whole_word_mask))
        eval_sets = masked_lm_eval_sets(tokenizer, options, config.target)
        general = eval_sets.get("general_heldout")
        return TaskSetup(
            model=model, source_train=None, target_train=train, eval_sets=eval_sets,
            fisher=None if general is None else FisherData(general, nll=masked_lm_nll, logits=None, vectorize=False),
            no_fisher_reason="EWC on the masked-LM task needs general text: set task_kwargs.general",
            measure=MaskedLMLoss, feature_dim=int(model.config.hidden_size), num_classes=int(model.config.vocab_size),
            sizes={"target_train_blocks": len(train), "target_train_docs": len(texts),
                   **{k: len(v) for k, v in eval_sets.items()}},
            input_contract={"kind": "masked_lm", "tokenizer": config.backbone, "block_size": options.block_size,
                            "inputs": ["input_ids", "attention_mask"], "outputs": "token logits over the vocabulary"})
