"""Where text tasks get their text: corpus specs, the held-out policy, the FOLDOC subject task, labelled rows.

A corpus spec is parts joined by "+": dictd:NAME (a dictd dictionary: foldoc, jargon, gcide), task:foldoc (the
subject task's own train + unlabeled text: TAPT), wordnet:glosses (WordNet 3.0, `wordnet`), general:base /
general:control / general:all (GCIDE + WordNet without FOLDOC or Jargon text, split by hash: `general`), file:PATH, hub:NAME, and the labelled-source forms csv:PATH,
jsonl:PATH, parquet:PATH, hf:NAME_OR_FOLDER (their "text" column; `corpora.load_text`, `labelled`). Held-out text is
fixed per document (a hash of its text), so every run of an experiment measures the same text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import torch

from .corpora import exclude_headwords, foldoc_subject_task, load_text, tokenize_corpus
from .dictd import dictd_path, read_dictd
from .general import DOMAIN_DICTIONARIES, GENERAL_DICTIONARY, general_corpus
from .general import SPECS as GENERAL_SPECS
from .general import clear_cache as clear_general_cache
from .labelled import LabelledTextOptions, check_labelled_source, is_labelled_spec
from .mlm import block_rows
from .wordnet import read_glosses, wordnet_dir
from .parts import HELDOUT_EVERY, is_heldout  # noqa: F401 (re-exported: where tasks look for them)

WORDNET_SPEC = "wordnet:glosses"


class TextTaskError(ValueError):
    """A text task configured in a way that cannot work; the message names the field."""


@dataclass(frozen=True)
class SubjectTaskOptions:
    """The FOLDOC subject-classification task (`corpora.foldoc_subject_task`)."""

    num_classes: int = 8
    train_per_class: int = 8
    test_per_class: int = 50
    seed: int = 0


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


@lru_cache(maxsize=8)
def _dictd_entries(name: str) -> tuple:
    return tuple(read_dictd(name))


def subject_task(options: SubjectTaskOptions | dict[str, Any] | None = None):
    """The FOLDOC subject task for these options; built once per (dictionary content, options), as a masked-LM
    build asks for it for exclusions, TAPT text and held-out text."""
    o = asdict(options) if isinstance(options, SubjectTaskOptions) else {**asdict(SubjectTaskOptions()), **(options or {})}
    return _subject_task(_dictd_entries("foldoc"), o["num_classes"], o["train_per_class"], o["test_per_class"], o["seed"])


@lru_cache(maxsize=4)
def _subject_task(entries: tuple, num_classes: int, train_per_class: int, test_per_class: int, seed: int):
    return foldoc_subject_task(list(entries), num_classes, train_per_class=train_per_class,
                               test_per_class=test_per_class, seed=seed)


def clear_caches() -> None:
    """Forget cached dictionaries and subject tasks (after DOMAINADAPT_DICTD_DIR changes)."""
    _dictd_entries.cache_clear()
    _subject_task.cache_clear()
    clear_general_cache()


def corpus_texts(spec: str, *, exclude: frozenset[str] = frozenset(), subject: SubjectTaskOptions | dict | None = None,
                 max_docs: int | None = None, seed: int = 0) -> list[str]:
    """Documents of "+"-joined corpus specs; "task:foldoc" = the subject task's train + unlabeled text (TAPT).
    `exclude`: headwords left out of dictd corpora (the task's test entries). `max_docs`: a seeded sample."""
    texts: list[str] = []
    for part in spec.split("+"):
        if part == "task:foldoc":
            if subject is None:
                raise TextTaskError("corpus 'task:foldoc' needs task_kwargs.subject_task")
            texts += list(subject_task(subject).tapt_corpus()["text"])
        elif part.startswith("dictd:"):
            texts += [e.body for e in exclude_headwords(_dictd_entries(part[len("dictd:"):]), exclude) if e.body.strip()]
        elif part == WORDNET_SPEC:
            texts += read_glosses()
        elif part.startswith("general:"):
            texts += general_corpus().texts(part[len("general:"):])
        else:
            texts += list(load_text(part)["text"])
    if max_docs is not None and len(texts) > max_docs:
        order = torch.randperm(len(texts), generator=torch.Generator().manual_seed(seed))[:max_docs].sort().values
        texts = [texts[int(i)] for i in order]
    return texts


def check_corpus_spec(spec: str, where: str) -> None:
    """Cheap checks of a corpus spec: known kinds; dictd dictionaries installed (the error names the package)."""
    for part in spec.split("+"):
        kind, sep, rest = part.partition(":")
        if part == "task:foldoc":
            dictd_path("foldoc")
        elif kind == "dictd" and rest:
            dictd_path(rest)
        elif part == WORDNET_SPEC:
            wordnet_dir()
        elif kind == "general":
            if rest not in GENERAL_SPECS:
                raise TextTaskError(f"{where}: unknown corpus '{part}'; use " + ", ".join(f"general:{p}" for p in GENERAL_SPECS))
            for name in (GENERAL_DICTIONARY, *DOMAIN_DICTIONARIES):
                dictd_path(name)
            wordnet_dir()
        elif is_labelled_spec(part):  # csv: / jsonl: / parquet: / hf: as text_classification reads them
            check_labelled_source(part, LabelledTextOptions(), where)
        elif kind not in ("file", "hub") or not sep or not rest:
            raise TextTaskError(f"{where}: unknown corpus '{part}'; use dictd:NAME, task:foldoc, wordnet:glosses, "
                                "general:base|control|all, file:PATH, hub:NAME, "
                                "csv:PATH, jsonl:PATH, parquet:PATH or hf:NAME_OR_FOLDER, joined by '+'")


def token_blocks(texts: list[str], tokenizer: Any, block_size: int, whole_word_mask: bool = False) -> list[dict[str, torch.Tensor]]:
    """The masking collator's rows: `texts` tokenised into blocks of `block_size` tokens."""
    from datasets import Dataset  # Hugging Face datasets: imported with the first text task, not with the package

    blocks = tokenize_corpus(Dataset.from_dict({"text": texts}), tokenizer, block_size, whole_word_mask=whole_word_mask)
    return block_rows(blocks)  # with offset_mapping when whole-word masking needs it
