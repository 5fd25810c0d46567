"""A sequence classifier fine-tuned on labelled text, optionally from a DAPT / TAPT run (`init_from`).

    task="text_classification", method="source_only"
    backbone     as for masked_lm; init_from = a masked_lm run directory starts the encoder from its weights
    source       "foldoc_subjects" (the subject task; its train split is the labelled data)
    task_kwargs  `TextClassificationOptions`
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..models.registry import resolve_text_backbone
from ..models.text_classifier import TextClassifier
from ..text.dictd import dictd_path
from ..text.mlm import load_masked_lm
from ..text.sources import SubjectTaskOptions, TextTaskError, TokenizedLabelled, subject_task
from ..train.checkpoint import load_model_weights
from ..train.config import TrainConfig
from . import register_task
from .base import Task, TaskSetup
from .masked_lm import check_text_backbone, check_text_method


@dataclass(frozen=True)
class TextClassificationOptions:
    subject_task: SubjectTaskOptions = field(default_factory=SubjectTaskOptions)
    max_length: int = 128  # tokens per text (truncated)
    pooling: str = "mean"  # "mean" (as all-MiniLM-L6-v2 was trained) or "cls"


@register_task
class TextClassification(Task):
    name = "text_classification"
    Options = TextClassificationOptions
    error = TextTaskError

    def check(self, config: TrainConfig, options: TextClassificationOptions) -> None:
        check_text_method(config, "source_only")
        check_text_backbone(config)
        if config.source != "foldoc_subjects":
            raise TextTaskError(f"task 'text_classification' has one labelled source, 'foldoc_subjects'; got '{config.source}'")
        if config.regularizers:
            raise TextTaskError("regularizers on text_classification are not supported; regularise the masked-LM stage")
        if options.pooling not in ("mean", "cls"):
            raise TextTaskError(f"task_kwargs.pooling must be 'mean' or 'cls', not '{options.pooling}'")
        dictd_path("foldoc")

    def _encoder_and_tokenizer(self, config: TrainConfig, init_state: dict[str, Any] | None):
        mlm, tokenizer = load_masked_lm(resolve_text_backbone(config.backbone))
        if init_state is not None:
            keys = init_state["modules"]
            if any(k.startswith("model.encoder.") for k in keys):  # a classifier run: its encoder
                mlm.base_model.load_state_dict({k[len("model.encoder."):]: v for k, v in keys.items()
                                                if k.startswith("model.encoder.")})
            else:  # a masked-LM run (DAPT / TAPT)
                load_model_weights(mlm, init_state, config.init_from)
        return mlm.base_model, tokenizer

    def build_model(self, config: TrainConfig, options: TextClassificationOptions, info: dict[str, int]) -> nn.Module:
        encoder, _ = self._encoder_and_tokenizer(config, None)
        return TextClassifier(encoder, info["num_classes"], pooling=options.pooling)

    def build(self, config: TrainConfig, options: TextClassificationOptions,
              init_state: dict[str, Any] | None) -> TaskSetup:
        task = subject_task(options.subject_task)
        encoder, tokenizer = self._encoder_and_tokenizer(config, init_state)
        model = TextClassifier(encoder, len(task.label_names), pooling=options.pooling)

        def encode(split: Any) -> TokenizedLabelled:
            enc = tokenizer(list(split["text"]), truncation=True, max_length=options.max_length)["input_ids"]
            return TokenizedLabelled(enc, list(split["label"]), tokenizer.pad_token_id or 0)

        train, test = encode(task.train), encode(task.test)
        return TaskSetup(model=model, source_train=train, target_train=None, eval_sets={"target_test": test},
                         no_fisher_reason="EWC on text_classification is not supported; regularise the masked-LM stage",
                         feature_dim=model.feature_dim, num_classes=model.num_classes,
                         sizes={"source_train": len(train), "target_test": len(test), "classes": len(task.label_names)})
