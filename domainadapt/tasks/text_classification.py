"""A sequence classifier fine-tuned on labelled text, optionally from a DAPT / TAPT run (`init_from`).

    task="text_classification", method="source_only"
    backbone     "minilm", a local model folder (config.json + tokenizer, as save_pretrained writes them) or a hub
                 name; init_from = a masked_lm run directory starts the encoder from its weights
    source       the labelled data:
                   "foldoc_subjects"   the FOLDOC subject task (task_kwargs.subject_task; its train split)
                   "csv:PATH"          a CSV file with a header row
                   "jsonl:PATH"        JSON Lines ("json:PATH" also reads a JSON array)
                   "parquet:PATH"      a Parquet file
                   "hf:NAME"           a Hugging Face Hub dataset (task_kwargs hf_config, hf_split_train, hf_split_test)
                   "hf:FOLDER"         a folder written by save_to_disk, or of data files (train.csv + test.csv)
    target       ignored for foldoc_subjects and when it is not a labelled spec (the CLI default); a labelled spec
                 other than the source (same forms, same columns and classes) is a second domain: its test split is
                 "target_test" and the source's is "source_test"
    task_kwargs  `TextClassificationOptions`, e.g. --task-arg text_column=body --task-arg label_column=topic

Eval set "target_test" is the source's test split when no labelled target is given (as for foldoc_subjects). A
source with one split (a file, a saved Dataset, a hub dataset without hf_split_test / "test") is split into
train and test by `data.splits.stratified_split` with config.test_fraction and config.split_seed, as image domains
are. Labels keep their names (`text.labelled`): TaskSetup.class_names, result.json's "classes".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..data.domain import DomainError
from ..data.splits import stratified_split
from ..models.registry import resolve_text_backbone
from ..models.text_classifier import HFSequenceClassifier, TextClassifier
from ..text.dictd import dictd_path
from ..text.labelled import LabelledText, check_labelled_source, is_labelled_spec, load_labelled
from ..text.labelled import LabelledTextOptions as _Columns
from ..text.mlm import TextModelError, from_pretrained_kwargs, load_masked_lm, one_line
from ..text.sources import SubjectTaskOptions, TextTaskError, TokenizedLabelled, subject_task
from ..train.checkpoint import load_model_weights
from ..train.config import TrainConfig
from . import register_task
from .base import Task, TaskSetup
from .masked_lm import check_text_backbone, check_text_method

SUBJECT_SOURCE = "foldoc_subjects"
POOLINGS = ("mean", "cls", "hf")  # hf: AutoModelForSequenceClassification's own pooler and head (HFSequenceClassifier)


@dataclass(frozen=True)
class TextClassificationOptions:
    subject_task: SubjectTaskOptions = field(default_factory=SubjectTaskOptions)  # source foldoc_subjects only
    max_length: int = 128  # tokens per text (or text pair), truncated
    pooling: str = "mean"  # "mean" (as all-MiniLM-L6-v2 was trained), "cls", or "hf": Hugging Face's own head
    # own data (csv: / jsonl: / parquet: / hf: sources; `text.labelled.LabelledTextOptions` documents each)
    text_column: str = "text"  # "text" and "label": the column names of most Hugging Face classification datasets
    text_pair_column: str | None = None
    label_column: str = "label"
    hf_config: str | None = None
    hf_split_train: str = "train"
    hf_split_test: str | None = None

    def columns(self) -> _Columns:
        return _Columns(text_column=self.text_column, text_pair_column=self.text_pair_column,
                        label_column=self.label_column, hf_config=self.hf_config, hf_split_train=self.hf_split_train,
                        hf_split_test=self.hf_split_test)


def _labelled_target(config: TrainConfig) -> str | None:
    """The target spec when it is a second labelled domain (a labelled spec other than the source), else None."""
    return config.target if config.target != config.source and is_labelled_spec(config.target) else None


def _split(data: LabelledText, config: TrainConfig, where: str) -> tuple[Any, Any]:
    """(train, test): the source's own splits, or a stratified held-out share of its one split."""
    if data.test is not None:
        return data.train, data.test
    try:
        train_idx, test_idx = stratified_split(torch.tensor(data.train["label"]), config.test_fraction,
                                               config.split_seed)
    except DomainError as err:
        raise TextTaskError(f"{where}: {err}") from None
    if len(test_idx) == 0 or len(train_idx) == 0:
        raise TextTaskError(f"{where}: {len(data.train)} rows are too few for test_fraction={config.test_fraction}: "
                            "a split would be empty; add rows or raise --test-fraction")
    return data.train.select(train_idx.tolist()), data.train.select(test_idx.tolist())


@register_task
class TextClassification(Task):
    name = "text_classification"
    Options = TextClassificationOptions
    error = TextTaskError

    def check(self, config: TrainConfig, options: TextClassificationOptions) -> None:
        check_text_method(config, "source_only")
        check_text_backbone(config)
        own = is_labelled_spec(config.source)
        if config.source != SUBJECT_SOURCE and not own:
            raise TextTaskError(f"task 'text_classification': source '{config.source}' is neither 'foldoc_subjects' "
                                "nor labelled text: csv:PATH, jsonl:PATH, json:PATH, parquet:PATH or hf:NAME_OR_FOLDER")
        if config.regularizers:
            raise TextTaskError("regularizers on text_classification are not supported; regularise the masked-LM stage")
        if options.pooling not in POOLINGS:
            raise TextTaskError(f"task_kwargs.pooling must be one of {', '.join(POOLINGS)}, not '{options.pooling}'")
        if options.max_length < 2:
            raise TextTaskError(f"task_kwargs.max_length must be at least 2 ([CLS] and [SEP]), not {options.max_length}")
        if not own:
            dictd_path("foldoc")
        else:
            check_labelled_source(config.source, options.columns(), "source")
            target = _labelled_target(config)
            if target is not None:
                check_labelled_source(target, options.columns(), "target")

    def _encoder_and_tokenizer(self, config: TrainConfig, init_state: dict[str, Any] | None):
        source = resolve_text_backbone(config.backbone)
        try:
            mlm, tokenizer = load_masked_lm(source)
        except ValueError as err:  # an encoder family with no masked-LM class: the bare encoder
            if "Unrecognized configuration class" not in str(err):
                raise
            return self._bare_encoder(source, init_state)
        if init_state is not None:
            keys = init_state["modules"]
            if any(k.startswith("model.encoder.") for k in keys):  # a classifier run: its encoder
                mlm.base_model.load_state_dict({k[len("model.encoder."):]: v for k, v in keys.items()
                                                if k.startswith("model.encoder.")})
            else:  # a masked-LM run (DAPT / TAPT)
                load_model_weights(mlm, init_state, config.init_from)
        return mlm.base_model, tokenizer

    @staticmethod
    def _bare_encoder(source: str, init_state: dict[str, Any] | None):
        from transformers import AutoModel, AutoTokenizer

        kwargs = from_pretrained_kwargs(source)
        try:
            encoder, tokenizer = AutoModel.from_pretrained(source, **kwargs), AutoTokenizer.from_pretrained(source, **kwargs)
        except (OSError, ValueError) as err:
            raise TextModelError(f"cannot load the text backbone '{source}': {one_line(err)}") from None
        if init_state is not None:  # a classifier run's encoder, or a causal-LM run's body (GPT-2: "transformer")
            modules = init_state["modules"]
            prefix = ("model.encoder." if any(k.startswith("model.encoder.") for k in modules)
                      else f"model.{encoder.base_model_prefix}.")
            state = {k[len(prefix):]: v for k, v in modules.items() if k.startswith(prefix)}
            if not state:
                raise TextTaskError(f"init_from: the run holds no weights of '{source}''s encoder (looked for "
                                    f"{prefix}*): it was trained from another backbone")
            encoder.load_state_dict(state)
        return encoder, tokenizer

    @staticmethod
    def _hf_classifier(config: TrainConfig, num_classes: int, init_state: dict[str, Any] | None,
                       pretrained: bool = True) -> tuple[nn.Module, Any]:
        """AutoModelForSequenceClassification for `pooling="hf"`: the backbone's weights (or a masked-LM / classifier
        run's, `init_from`) under a new head of `num_classes`; `pretrained=False` builds it from its config only (a
        finished run's weights are loaded next)."""
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

        source = resolve_text_backbone(config.backbone)
        kwargs = from_pretrained_kwargs(source)
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
            if pretrained:
                hf = AutoModelForSequenceClassification.from_pretrained(source, num_labels=num_classes, **kwargs)
            else:
                hf_config = AutoConfig.from_pretrained(source, num_labels=num_classes, **kwargs)
                hf = AutoModelForSequenceClassification.from_config(hf_config)
        except (OSError, ValueError) as err:
            raise TextModelError(f"cannot load '{source}' as a sequence classifier (pooling=hf): {one_line(err)}") from None
        if init_state is not None:
            modules = init_state["modules"]
            prefix = f"model.{hf.base_model_prefix}."  # a masked-LM run: its encoder (the pooler and head stay new)
            if any(k.startswith("model.hf_model.") for k in modules):  # a pooling=hf classifier run: its encoder
                prefix = f"model.hf_model.{hf.base_model_prefix}."
            elif any(k.startswith("model.encoder.") for k in modules):  # a mean / cls classifier run: its encoder
                prefix = "model.encoder."
            weights = {k[len(prefix):]: v for k, v in modules.items() if k.startswith(prefix)}
            if not weights:
                raise TextTaskError(f"init_from: {config.init_from} holds no '{hf.base_model_prefix}' encoder for this "
                                    "backbone")
            hf.base_model.load_state_dict(weights, strict=False)
        return HFSequenceClassifier(hf), tokenizer

    def build_model(self, config: TrainConfig, options: TextClassificationOptions, info: dict[str, int]) -> nn.Module:
        if options.pooling == "hf":
            return self._hf_classifier(config, info["num_classes"], None, pretrained=False)[0]
        encoder, _ = self._encoder_and_tokenizer(config, None)
        return TextClassifier(encoder, info["num_classes"], pooling=options.pooling)

    def train_size(self, config: TrainConfig, options: TextClassificationOptions) -> int:
        if config.source == SUBJECT_SOURCE:
            return len(subject_task(options.subject_task).train)
        source = load_labelled(config.source, options.columns(), where="source", progress=False)
        return len(_split(source, config, "source")[0])

    def build(self, config: TrainConfig, options: TextClassificationOptions,
              init_state: dict[str, Any] | None) -> TaskSetup:
        if config.source == SUBJECT_SOURCE:
            task = subject_task(options.subject_task)
            splits = {"source_train": task.train, "target_test": task.test}
            names = tuple(task.label_names)
        else:  # read (and fail on bad data) before the model loads
            source = load_labelled(config.source, options.columns(), where="source", progress=config.progress)
            names = source.class_names
            train, test = _split(source, config, "source")
            splits = {"source_train": train}
            target_spec = _labelled_target(config)
            if target_spec is None:
                splits["target_test"] = test
            else:
                target = load_labelled(target_spec, options.columns(), where="target", class_names=names,
                                       progress=config.progress)
                splits["source_test"], splits["target_test"] = test, _split(target, config, "target")[1]
        if options.pooling == "hf":
            model, tokenizer = self._hf_classifier(config, len(names), init_state)
        else:
            encoder, tokenizer = self._encoder_and_tokenizer(config, init_state)
            model = TextClassifier(encoder, len(names), pooling=options.pooling)

        def encode(split: Any) -> TokenizedLabelled:
            pairs = list(split["text_pair"]) if "text_pair" in split.column_names else None
            enc = tokenizer(list(split["text"]), pairs, truncation=True, max_length=options.max_length)["input_ids"]
            return TokenizedLabelled(enc, list(split["label"]), tokenizer.pad_token_id or 0)

        data = {name: encode(split) for name, split in splits.items()}
        train = data.pop("source_train")
        return TaskSetup(model=model, source_train=train, target_train=None, eval_sets=data,
                         no_fisher_reason="EWC on text_classification is not supported; regularise the masked-LM stage",
                         feature_dim=model.feature_dim, num_classes=model.num_classes, class_names=names,
                         input_contract=text_input_contract(config, options),
                         sizes={"source_train": len(train), **{k: len(v) for k, v in data.items()},
                                "classes": len(names)})


def text_input_contract(config: TrainConfig, options: TextClassificationOptions) -> dict[str, Any]:
    """What the trained model takes: text (a pair with text_pair_column) tokenized by the backbone's tokenizer,
    truncated to max_length tokens, as input_ids + attention_mask."""
    contract: dict[str, Any] = {"kind": "text", "tokenizer": config.backbone, "max_length": options.max_length,
                                "pooling": options.pooling, "inputs": ["input_ids", "attention_mask"]}
    if config.source != SUBJECT_SOURCE:
        contract["text_column"] = options.text_column
        if options.text_pair_column is not None:
            contract["text_pair_column"] = options.text_pair_column
    return contract
