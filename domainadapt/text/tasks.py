"""Text tasks of the shared trainer: masked-LM continued pretraining (DAPT / TAPT) and sequence classification.

Gururangan et al. 2020 ("Don't Stop Pretraining", ACL): continue a pretrained LM's masked-LM training on
unlabeled text of the domain (DAPT, §3) or of the task (TAPT, §4), then fine-tune a classifier from it.

How a TrainConfig names them:
  task="masked_lm", method="masked_lm"
    backbone    "minilm" (the offline all-MiniLM-L6-v2), a local folder or a hub name of a masked LM
    target      the training text: corpus specs joined by "+", e.g. "dictd:foldoc+dictd:jargon"; "task:foldoc" is
                the subject task's own text (train + unlabeled entries: TAPT); also file:PATH, hub:NAME
    task_kwargs block_size (128), general ("dictd:gcide": held-out general text, for forgetting and the EWC
                Fisher), subject_task ({num_classes, train_per_class, test_per_class, seed}: its test entries
                are never trained on, and they are the held-out domain text), max_docs (of the joined corpus, a seeded
                sample), heldout_blocks (256), whole_word_mask (False)
  task="text_classification", method="source_only"
    backbone    as above; init_from = a masked_lm run directory starts the encoder from its weights
    source      "foldoc_subjects" (the subject task; its train split is the labelled data)
    task_kwargs subject_task (as above), max_length (128), pooling ("mean", as all-MiniLM-L6-v2 was trained; or "cls")
Held-out text is fixed per document (a hash of its text), so every run of an experiment measures the same text.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import torch
from torch import nn

from ..tasks import Task, TaskSetup, load_model_weights, register_task
from ..train.config import TrainConfig
from .mlm import FixedMaskedBlocks, MaskedBlocks, block_rows, evaluate_masked_lm, masked_lm_loss

HELDOUT_EVERY = 20  # one document in 20 (by a hash of its text) is held out of every training corpus
SUBJECT_TASK_DEFAULTS = {"num_classes": 8, "train_per_class": 8, "test_per_class": 50, "seed": 0}
MLM_OPTIONS = {"block_size", "general", "subject_task", "max_docs", "heldout_blocks", "whole_word_mask"}
CLS_OPTIONS = {"subject_task", "max_length", "pooling"}


class TextTaskError(ValueError):
    """A text task configured in a way that cannot work; the message names the field."""


# ------------------------------------------------------------------------------------------------ datasets


class TokenizedLabelled:
    """Tokenised texts with labels; get_batch pads to the longest row of the batch → (inputs, labels)."""

    def __init__(self, encodings: list[list[int]], labels: Sequence[int], pad_id: int) -> None:
        self.encodings, self.labels, self.pad_id = encodings, torch.as_tensor(list(labels)), pad_id

    def __len__(self) -> int:
        return len(self.encodings)

    def get_batch(self, index: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        rows = [self.encodings[int(i)] for i in index]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for k, r in enumerate(rows):
            ids[k, : len(r)] = torch.as_tensor(r)
            mask[k, : len(r)] = 1
        return {"input_ids": ids, "attention_mask": mask}, self.labels[index]


# ------------------------------------------------------------------------------------------------ text


def is_heldout(text: str) -> bool:
    """A fixed 1-in-HELDOUT_EVERY choice of documents, the same in every run and corpus."""
    return hashlib.md5(text.encode("utf-8")).digest()[0] % HELDOUT_EVERY == 0


def _subject_task_options(task_kwargs: dict[str, Any]) -> dict[str, Any] | None:
    options = task_kwargs.get("subject_task")
    if options is None:
        return None
    unknown = sorted(set(options) - set(SUBJECT_TASK_DEFAULTS))
    if unknown:
        raise TextTaskError(f"task_kwargs.subject_task does not take {unknown}; it takes {sorted(SUBJECT_TASK_DEFAULTS)}")
    return {**SUBJECT_TASK_DEFAULTS, **options}


@lru_cache(maxsize=8)
def _dictd_entries(name: str) -> tuple:
    from .dictd import read_dictd

    return tuple(read_dictd(name))


def subject_task(options: dict[str, Any]):
    """The FOLDOC subject-classification task (`corpora.foldoc_subject_task`) for these options; built once per
    (dictionary content, options), as a masked-LM build asks for it for exclusions, TAPT text and held-out text."""
    o = {**SUBJECT_TASK_DEFAULTS, **options}
    return _subject_task(_dictd_entries("foldoc"), o["num_classes"], o["train_per_class"], o["test_per_class"], o["seed"])


@lru_cache(maxsize=4)
def _subject_task(entries: tuple, num_classes: int, train_per_class: int, test_per_class: int, seed: int):
    from .corpora import foldoc_subject_task

    return foldoc_subject_task(list(entries), num_classes, train_per_class=train_per_class,
                               test_per_class=test_per_class, seed=seed)


def corpus_texts(spec: str, *, exclude: frozenset[str] = frozenset(), subject: dict[str, Any] | None = None,
                 max_docs: int | None = None, seed: int = 0) -> list[str]:
    """Documents of "+"-joined corpus specs; "task:foldoc" = the subject task's train + unlabeled text (TAPT).
    `exclude`: headwords left out of dictd corpora (the task's test entries). `max_docs`: a seeded sample."""
    from .corpora import load_text

    texts: list[str] = []
    for part in spec.split("+"):
        if part == "task:foldoc":
            if subject is None:
                raise TextTaskError("corpus 'task:foldoc' needs task_kwargs.subject_task")
            texts += list(subject_task(subject).tapt_corpus()["text"])
        elif part.startswith("dictd:"):
            from .corpora import exclude_headwords

            texts += [e.body for e in exclude_headwords(_dictd_entries(part[len("dictd:"):]), exclude) if e.body.strip()]
        else:
            texts += list(load_text(part)["text"])
    if max_docs is not None and len(texts) > max_docs:
        order = torch.randperm(len(texts), generator=torch.Generator().manual_seed(seed))[:max_docs].sort().values
        texts = [texts[int(i)] for i in order]
    return texts


def _blocks(texts: list[str], tokenizer: Any, block_size: int, whole_word_mask: bool = False) -> list[dict[str, torch.Tensor]]:
    from datasets import Dataset

    from .corpora import tokenize_corpus

    blocks = tokenize_corpus(Dataset.from_dict({"text": texts}), tokenizer, block_size, whole_word_mask=whole_word_mask)
    return block_rows(blocks)  # with offset_mapping when whole-word masking needs it


def _resolve_backbone(name: str) -> str:
    return name if name != "minilm" else os.fspath(__import__("domainadapt.text.mlm", fromlist=["minilm_path"]).minilm_path())


def _check_backbone(config: TrainConfig) -> None:
    if config.backbone in ("digits_cnn", "mlp") or config.backbone.startswith("resnet"):
        raise TextTaskError(f"task '{config.task}' needs a text backbone (\"minilm\", a folder or a hub name of a "
                            f"masked LM), not the image backbone '{config.backbone}'")
    if config.backbone == "minilm":
        from .mlm import minilm_path

        minilm_path()  # a clear error naming the pip package when it is absent


# ------------------------------------------------------------------------------------------------ masked LM


def _check_task_fields(config: TrainConfig, options: set[str], method: str) -> None:
    """The checks both text tasks share: known task_kwargs, the task's method, the subject task, the backbone."""
    unknown = sorted(set(config.task_kwargs) - options)
    if unknown:
        raise TextTaskError(f"task '{config.task}' does not take task_kwargs {unknown}; it takes {sorted(options)}")
    if config.method != method:
        raise TextTaskError(f"task '{config.task}' trains with method '{method}', not '{config.method}'")
    _subject_task_options(config.task_kwargs)
    _check_backbone(config)


def _check_masked_lm(config: TrainConfig) -> None:
    _check_task_fields(config, MLM_OPTIONS, "masked_lm")
    _check_corpus_spec(config.target, "target")
    if "general" in config.task_kwargs:
        _check_corpus_spec(config.task_kwargs["general"], "task_kwargs.general")


def _check_corpus_spec(spec: str, where: str) -> None:
    from .dictd import dictd_path

    for part in spec.split("+"):
        kind, sep, rest = part.partition(":")
        if part == "task:foldoc":
            dictd_path("foldoc")
        elif kind == "dictd" and rest:
            dictd_path(rest)  # names the Debian package to install when missing
        elif kind not in ("file", "hub") or not sep or not rest:
            raise TextTaskError(f"{where}: unknown corpus '{part}'; use dictd:NAME, task:foldoc, file:PATH or hub:NAME, "
                                "joined by '+'")


def masked_lm_eval_sets(tokenizer: Any, task_kwargs: dict[str, Any], target: str) -> dict[str, FixedMaskedBlocks]:
    """The held-out sets every masked-LM run is scored on: the domain's (the subject task's test entries, or the
    target corpus's held-out documents) and, when task_kwargs.general is set, general text's."""
    from .corpora import mlm_collator

    block_size = int(task_kwargs.get("block_size", 128))
    n_max = int(task_kwargs.get("heldout_blocks", 256))
    subject = _subject_task_options(task_kwargs)
    if subject is not None:
        domain = list(subject_task(subject).test["text"])
    else:
        domain = [t for t in corpus_texts(target) if is_heldout(t)]
    sets = {"domain_heldout": domain}
    if task_kwargs.get("general"):
        sets["general_heldout"] = [t for t in corpus_texts(task_kwargs["general"]) if is_heldout(t)]
    out = {}
    for name, texts in sets.items():
        out[name] = FixedMaskedBlocks(_blocks(texts, tokenizer, block_size)[:n_max], mlm_collator(tokenizer, seed=1234))
    return out


def heldout_mlm_losses(backbone: str, task_kwargs: dict[str, Any], target: str, *,
                       device: str = "cpu", seed: int = 0) -> dict[str, float]:
    """The held-out masked-LM losses of a model before any continued pretraining (the "base" row). A head that
    the checkpoint lacks (all-MiniLM-L6-v2 ships none) is initialised from `seed`, as a seed-0 run's would be."""
    from ..train.seeding import seed_everything
    from .mlm import load_masked_lm

    seed_everything(seed)  # as runs.run does before building the task: the same fresh head as a seed-0 run's
    model, tokenizer = load_masked_lm(_resolve_backbone(backbone), device=device)
    sets = masked_lm_eval_sets(tokenizer, task_kwargs, target)
    return {name: evaluate_masked_lm(model, data, device=torch.device(device), batch_size=32)["mlm_loss"]
            for name, data in sets.items()}


def masked_lm_fisher(model: nn.Module, blocks: FixedMaskedBlocks, n_samples: int) -> dict[str, torch.Tensor]:
    """Empirical diagonal Fisher of the masked-LM loss: the mean over held-out blocks of the squared gradient of
    each block's own loss (one block = one example; per-example autograd, the model in eval mode). The EWC
    anchor of DAPT+EWC (Kirkpatrick et al. 2017) on general text. A per-example loop, not vmap: Hugging Face
    attention does not vectorise under torch.func for every model, and 64–256 blocks take seconds."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = [p for n, p in model.named_parameters() if p.requires_grad]
    total = [torch.zeros_like(p, dtype=torch.float64) for p in params]
    n = min(n_samples, len(blocks))
    if n < 1:
        raise TextTaskError("the masked-LM Fisher needs at least one block of general text")
    was_training = model.training
    model.eval()
    try:
        for i in range(n):
            x, labels = blocks.get_batch(torch.tensor([i]))
            device = params[0].device
            loss = masked_lm_loss(model, x["input_ids"].to(device), x["attention_mask"].to(device), labels.to(device))
            for t, g in zip(total, torch.autograd.grad(loss, params, allow_unused=True)):
                if g is not None:
                    t += g.double().square()
    finally:
        model.train(was_training)
    return {name: (t / n).float() for name, t in zip(names, total)}


def _build_masked_lm(config: TrainConfig, init_state: dict[str, Any] | None) -> TaskSetup:
    from .corpora import mlm_collator
    from .mlm import load_masked_lm

    kw = config.task_kwargs
    model, tokenizer = load_masked_lm(_resolve_backbone(config.backbone))
    if init_state is not None:
        load_model_weights(model, init_state, config.init_from)
    subject = _subject_task_options(kw)
    exclude = subject_task(subject).test_headwords if subject is not None else frozenset()
    texts = [t for t in corpus_texts(config.target, exclude=exclude, subject=subject, max_docs=kw.get("max_docs"),
                                     seed=config.split_seed) if not is_heldout(t)]
    if subject is not None:  # no test entry of the task, even if a corpus holds its text under another headword
        test_texts = set(subject_task(subject).test["text"])
        texts = [t for t in texts if t not in test_texts]
    whole_word = bool(kw.get("whole_word_mask", False))
    rows = _blocks(texts, tokenizer, int(kw.get("block_size", 128)), whole_word_mask=whole_word)
    train = MaskedBlocks(rows, mlm_collator(tokenizer, whole_word_mask=whole_word))
    eval_sets = masked_lm_eval_sets(tokenizer, kw, config.target)

    def fisher(m: nn.Module, options: dict[str, Any]) -> dict[str, torch.Tensor]:
        if "general_heldout" not in eval_sets:
            raise TextTaskError("EWC on the masked-LM task needs general text: set task_kwargs.general")
        return masked_lm_fisher(m, eval_sets["general_heldout"], int(options.get("samples", 64)))

    hidden = int(model.config.hidden_size)
    return TaskSetup(model=model, source_train=None, target_train=train, eval_sets=eval_sets, fisher=fisher,
                     evaluator=evaluate_masked_lm, feature_dim=hidden, num_classes=int(model.config.vocab_size),
                     sizes={"target_train_blocks": len(train), "target_train_docs": len(texts),
                            **{k: len(v) for k, v in eval_sets.items()}})


# ------------------------------------------------------------------------------------------------ classification


class TextClassifier(nn.Module):
    """Encoder → pooled features → dropout → linear head. `features_and_logits` serves the methods; inputs are
    dicts of input_ids / attention_mask. Mean pooling is how all-MiniLM-L6-v2 was trained (sentence-transformers)."""

    def __init__(self, encoder: nn.Module, num_classes: int, pooling: str = "mean", dropout: float = 0.1) -> None:
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise TextTaskError(f"pooling must be 'mean' or 'cls', not '{pooling}'")
        self.encoder = encoder
        self.pooling = pooling
        self.feature_dim = int(encoder.config.hidden_size)
        self.num_classes = num_classes
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.feature_dim, num_classes)

    def features(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = self.encoder(input_ids=x["input_ids"], attention_mask=x["attention_mask"])[0]
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = x["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    def features_and_logits(self, x: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.features(x)
        return f, self.head(self.dropout(f))

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.features_and_logits(x)[1]


def _check_classification(config: TrainConfig) -> None:
    _check_task_fields(config, CLS_OPTIONS, "source_only")
    if config.source != "foldoc_subjects":
        raise TextTaskError(f"task 'text_classification' has one labelled source, 'foldoc_subjects'; got '{config.source}'")
    if config.regularizers:
        raise TextTaskError("regularizers on text_classification are not supported; regularise the masked-LM stage")
    from .dictd import dictd_path

    dictd_path("foldoc")


def _build_classification(config: TrainConfig, init_state: dict[str, Any] | None) -> TaskSetup:
    from .mlm import load_masked_lm

    kw = config.task_kwargs
    subject = _subject_task_options(kw) or dict(SUBJECT_TASK_DEFAULTS)
    task = subject_task(subject)
    mlm, tokenizer = load_masked_lm(_resolve_backbone(config.backbone))
    if init_state is not None:
        keys = init_state["modules"]
        if any(k.startswith("model.encoder.") for k in keys):  # a classifier run: its encoder
            mlm.base_model.load_state_dict({k[len("model.encoder."):]: v for k, v in keys.items()
                                            if k.startswith("model.encoder.")})
        else:  # a masked-LM run (DAPT / TAPT)
            load_model_weights(mlm, init_state, config.init_from)
    model = TextClassifier(mlm.base_model, len(task.label_names), pooling=kw.get("pooling", "mean"))
    max_length = int(kw.get("max_length", 128))

    def encode(split: Any) -> TokenizedLabelled:
        enc = tokenizer(list(split["text"]), truncation=True, max_length=max_length)["input_ids"]
        return TokenizedLabelled(enc, list(split["label"]), tokenizer.pad_token_id or 0)

    def no_fisher(m: nn.Module, options: dict[str, Any]) -> dict[str, torch.Tensor]:
        raise TextTaskError("EWC on text_classification is not supported; regularise the masked-LM stage")

    train, test = encode(task.train), encode(task.test)
    return TaskSetup(model=model, source_train=train, target_train=None, eval_sets={"target_test": test},
                     fisher=no_fisher,
                     feature_dim=model.feature_dim, num_classes=model.num_classes,
                     sizes={"source_train": len(train), "target_test": len(test), "classes": len(task.label_names)})


@torch.no_grad()
def _pooled_features(model: TextClassifier, data: TokenizedLabelled, batch_size: int) -> torch.Tensor:
    model.eval()
    index = torch.arange(len(data))
    return torch.cat([model.features(data.get_batch(index[s : s + batch_size])[0]) for s in range(0, len(data), batch_size)])


def subject_probe(config: TrainConfig, *, C: float = 1.0, batch_size: int = 32):
    """Linear probe of the encoder a `text_classification` config would fine-tune (its backbone, or the encoder
    of its init_from run): pooled features of the task's train and test entries, frozen, then
    `evaluation.linear_probe` → ProbeResult (acc, macro_f1, test predictions). Deterministic: no seed, no
    fine-tuning noise; compare two with `evaluation.paired_bootstrap_difference`."""
    from ..evaluation.linear_probe import linear_probe
    from ..runs import check_inputs, checkpoint_file
    from ..train.checkpoint import load_checkpoint

    if config.task != "text_classification":
        raise TextTaskError(f"subject_probe needs a text_classification config, got task '{config.task}'")
    check_inputs(config)
    state = None
    if config.init_from is not None:
        state = load_checkpoint(checkpoint_file(config.init_from))
    setup = _build_classification(config, state)
    train, test = setup.source_train, setup.eval_sets["target_test"]
    return linear_probe(_pooled_features(setup.model, train, batch_size), train.labels,
                        _pooled_features(setup.model, test, batch_size), test.labels, C=C)


register_task("masked_lm", Task(_check_masked_lm, _build_masked_lm))
register_task("text_classification", Task(_check_classification, _build_classification))
