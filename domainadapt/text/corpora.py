"""Text corpora as Hugging Face datasets, the FOLDOC subject task, and MLM blocks.

Domain- and task-adaptive pretraining (DAPT / TAPT; Gururangan et al., 2020, "Don't Stop Pretraining", ACL)
continue masked-LM training on unlabeled text of the target domain (DAPT) or of the task itself (TAPT),
then fine-tune on a few labels. Offline, FOLDOC plays both roles: its definitions are the computing domain,
and its subject tags (<networking>, <language>, ...) give a labelled classification task.

Corpus specs for `load_text`:
    dictd:NAME          bodies of a dictd dictionary (dictd:foldoc, dictd:jargon, dictd:gcide)
    hub:NAME[:CONFIG]   datasets.load_dataset(NAME, CONFIG) from the Hugging Face Hub (needs internet)
    file:PATH           .txt (one document per line), .csv, .json or .jsonl (a text column)
    csv:PATH, jsonl:PATH, json:PATH, parquet:PATH, hf:NAME_OR_FOLDER
                        the forms of text_classification's labelled sources (`text.labelled`), read the same way
                        (a hub name that cannot be downloaded fails in one line); their "text" column
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from .dictd import DictEntry, read_dictd

FILE_BUILDERS = {".txt": "text", ".csv": "csv", ".json": "json", ".jsonl": "json"}
LABELLED_KINDS = ("csv", "jsonl", "json", "parquet", "hf")  # = text.labelled.KINDS (imported lazily: it loads torch)


class CorpusError(ValueError):
    """A corpus spec or file that cannot give a text dataset (the message names it)."""


def _dataset(columns: dict[str, list]):
    from datasets import Dataset

    return Dataset.from_dict(columns)


def _norm(headword: str) -> str:
    return " ".join(headword.split()).lower()


def exclude_headwords(entries: Iterable[DictEntry], headwords: Iterable[str]) -> list[DictEntry]:
    """The entries none of whose headwords (main or alias, case-insensitive) is in `headwords`.

    Use it to keep the task's test definitions out of a DAPT corpus built from the same dictionary.
    """
    banned = {_norm(h) for h in headwords}
    return [e for e in entries if _norm(e.headword) not in banned and not any(_norm(a) in banned for a in e.aliases)]


def entries_dataset(entries: Iterable[DictEntry]):
    """datasets.Dataset with columns "text" (the body), "headword" and "subjects"."""
    entries = list(entries)
    return _dataset({"text": [e.body for e in entries], "headword": [e.headword for e in entries],
                     "subjects": [list(e.subjects) for e in entries]})


def load_text(spec: str, *, text_column: str = "text", split: str = "train", exclude: Iterable[str] = (),
              cache_dir: str | os.PathLike | None = None):
    """A datasets.Dataset with one column, "text", from a corpus spec (see the module docstring).

    `text_column` names the column holding text in csv/json/hub data; `exclude` drops dictd entries with these
    headwords (see exclude_headwords). Empty and whitespace-only documents are dropped; an empty result is an
    error. `cache_dir` goes to datasets.load_dataset (default: $HF_DATASETS_CACHE).
    """
    kind, sep, rest = spec.partition(":")
    own = kind in LABELLED_KINDS
    if not own and (not sep or not rest or kind not in ("dictd", "hub", "file")):
        raise CorpusError(f"unknown corpus spec {spec!r}; expected dictd:NAME (e.g. dictd:foldoc), "
                          "hub:NAME[:CONFIG], file:PATH (.txt, .csv, .json, .jsonl), csv:PATH, jsonl:PATH, "
                          "parquet:PATH or hf:NAME_OR_FOLDER")
    exclude = list(exclude)
    if exclude and kind != "dictd":
        raise CorpusError(f"exclude= (headwords) applies to dictd corpora only, not to {spec!r}")
    if own:
        from .labelled import LabelledTextOptions, read_splits

        dataset = _only_text(read_splits(spec, LabelledTextOptions(hf_split_train=split), "corpus")[0], text_column,
                             spec)
    elif kind == "dictd":
        texts = [e.body for e in exclude_headwords(read_dictd(rest), exclude)]
        dataset = _dataset({"text": texts})
    elif kind == "file":
        dataset = _load_file(Path(rest).expanduser(), text_column, cache_dir)
    else:
        from datasets import load_dataset

        from .labelled import hub_dataset_message, load_errors

        name, _, config = rest.partition(":")
        try:
            dataset = load_dataset(name, config or None, split=split,
                                   cache_dir=None if cache_dir is None else str(cache_dir))
        except load_errors() as err:  # one line for the CLI: offline, no such dataset, a missing config
            raise CorpusError(hub_dataset_message(name, config or None, err, f"corpus {spec!r}")) from None
        dataset = _only_text(dataset, text_column, spec)
    dataset = dataset.filter(lambda batch: [bool(t and t.strip()) for t in batch["text"]], batched=True)
    if len(dataset) == 0:
        raise CorpusError(f"corpus {spec!r} holds no non-empty text")
    return dataset


def _load_file(path: Path, text_column: str, cache_dir) -> Any:
    from datasets import load_dataset

    builder = FILE_BUILDERS.get(path.suffix.lower())
    if builder is None:
        raise CorpusError(f"cannot read text from {path}: expected a .txt, .csv, .json or .jsonl file")
    if not path.is_file():
        raise CorpusError(f"text file {path} does not exist")
    dataset = load_dataset(builder, data_files=str(path), split="train",
                           cache_dir=None if cache_dir is None else str(cache_dir))
    return _only_text(dataset, "text" if builder == "text" else text_column, f"file:{path}")


def _only_text(dataset, text_column: str, spec: str):
    if text_column not in dataset.column_names:
        raise CorpusError(f"corpus {spec!r} has no column {text_column!r} (columns: {dataset.column_names}); "
                          "pass text_column=")
    dataset = dataset.select_columns([text_column])
    return dataset.rename_column(text_column, "text") if text_column != "text" else dataset


# ---------------------------------------------------------------------------------------------- FOLDOC task


@dataclass
class SubjectTask:
    """A few-label subject classification task and its unlabeled rest (for TAPT).

    train / test: datasets.Dataset {"text", "label", "headword"}; unlabeled: {"text", "headword"}, the task's
    entries in neither split. label_names[i] is the subject of label i (most frequent first).
    """

    train: Any
    test: Any
    unlabeled: Any
    label_names: tuple[str, ...]

    @property
    def test_headwords(self) -> frozenset[str]:
        """Headwords of the test items: pass them to exclude_headwords / load_text(exclude=) for DAPT corpora."""
        return frozenset(self.test["headword"])

    def tapt_corpus(self):
        """The task's own unlabeled text, train texts included, as TAPT uses it (Gururangan et al. 2020, §4)."""
        from datasets import concatenate_datasets

        return concatenate_datasets([self.train.select_columns(["text"]), self.unlabeled.select_columns(["text"])])


def subject_counts(entries: Iterable[DictEntry]) -> Counter:
    """How many entries carry each subject (an entry counts once for each of its subjects)."""
    return Counter(s for e in entries for s in e.subjects)


def foldoc_subject_task(entries: Sequence[DictEntry], num_classes: int = 10, *, train_per_class: int = 16,
                        test_per_class: int = 100, seed: int = 0, rule: str = "exclusive") -> SubjectTask:
    """FOLDOC definitions labelled by subject: the `num_classes` most frequent subjects are the classes.

    rule="exclusive" (default) keeps an entry only when exactly one of its subjects is a class, so no text has
    two right answers (a <networking, protocol> entry is dropped when both are classes), and subjects are ranked
    by subject_counts over all entries; rule="first" labels an entry by its first-listed subject when that is
    a class, and ranks subjects by how often they are listed first. Ties are broken by name. Entries are deduplicated by headword (first kept) so no headword is in two splits.

    Per class, a seeded permutation gives train_per_class train items, then test_per_class test items; the
    rest is `unlabeled`. Deterministic for a given (entries, arguments).
    """
    if rule not in ("exclusive", "first"):
        raise ValueError(f"rule must be 'exclusive' or 'first', not {rule!r}")
    counts = subject_counts(entries) if rule == "exclusive" else Counter(e.subjects[0] for e in entries if e.subjects)
    if len(counts) < num_classes:
        raise ValueError(f"num_classes={num_classes} but the entries carry only {len(counts)} distinct subjects")
    classes = tuple(s for s, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:num_classes])
    label_of = {s: i for i, s in enumerate(classes)}

    members: list[list[DictEntry]] = [[] for _ in classes]
    seen: set[str] = set()
    for entry in entries:
        key = _norm(entry.headword)
        if key in seen or not entry.body:
            continue
        if rule == "exclusive":
            hits = [s for s in entry.subjects if s in label_of]
            label = label_of[hits[0]] if len(hits) == 1 else None
        else:
            label = label_of.get(entry.subjects[0]) if entry.subjects else None
        if label is not None:
            seen.add(key)
            members[label].append(entry)

    need = train_per_class + test_per_class
    short = [(classes[i], len(m)) for i, m in enumerate(members) if len(m) < need]
    if short:
        raise ValueError(f"too few entries for train_per_class={train_per_class} + test_per_class={test_per_class} "
                         f"in subject(s) {short} (rule={rule!r}); lower num_classes or the per-class counts")

    rng = np.random.default_rng(seed)
    split: dict[str, list[tuple[DictEntry, int]]] = {"train": [], "test": [], "unlabeled": []}
    for label, group in enumerate(members):
        order = rng.permutation(len(group))
        for rank, j in enumerate(order):
            part = "train" if rank < train_per_class else "test" if rank < need else "unlabeled"
            split[part].append((group[j], label))
    for part in ("train", "test"):  # mix the classes, reproducibly
        split[part] = [split[part][j] for j in rng.permutation(len(split[part]))]

    def labelled(items):
        return _dataset({"text": [e.body for e, _ in items], "label": [y for _, y in items],
                         "headword": [e.headword for e, _ in items]})

    unlabeled = _dataset({"text": [e.body for e, _ in split["unlabeled"]],
                          "headword": [e.headword for e, _ in split["unlabeled"]]})
    return SubjectTask(labelled(split["train"]), labelled(split["test"]), unlabeled, classes)


# ---------------------------------------------------------------------------------------------- MLM blocks


def group_texts(tokenized: dict[str, list[list]], block_size: int) -> dict[str, list[list]]:
    """Concatenate every column's token lists and cut them into blocks of `block_size`; drop the remainder.

    The Hugging Face run_mlm recipe; use it as `dataset.map(lambda b: group_texts(b, n), batched=True)`
    (then the remainder is dropped per map batch). Columns must hold one list per document, aligned.
    """
    if block_size < 1:
        raise ValueError(f"block_size must be positive, not {block_size}")
    out: dict[str, list[list]] = {}
    for key, docs in tokenized.items():
        flat = [token for doc in docs for token in doc]
        usable = len(flat) // block_size * block_size
        out[key] = [flat[i : i + block_size] for i in range(0, usable, block_size)]
    return out


def whole_word_mask_needs_offsets() -> bool:
    """transformers >= 5 finds words from offset_mapping (a flag on DataCollatorForLanguageModeling);
    4.x has DataCollatorForWholeWordMask, which finds them from "##" pieces."""
    from transformers import DataCollatorForLanguageModeling

    return "whole_word_mask" in {f.name for f in fields(DataCollatorForLanguageModeling)}


def tokenize_corpus(dataset, tokenizer, block_size: int = 128, *, whole_word_mask: bool = False,
                    text_column: str = "text", map_batch_size: int = 1000, num_proc: int | None = None):
    """Blocks of exactly `block_size` tokens for masked-LM training, as a datasets.Dataset.

    Documents are tokenized without special tokens, each followed by [SEP] as a document boundary (when the
    tokenizer has one), concatenated (group_texts) into chunks of block_size − 2, and each chunk is wrapped as
    [CLS] chunk [SEP] (when the tokenizer has both), so every block looks like a BERT input. Columns:
    input_ids, attention_mask (all ones: blocks are full), special_tokens_mask (so the collator never masks
    [CLS]/[SEP]) and, for whole-word masking under transformers >= 5, offset_mapping. Feed it to
    mlm_collator(tokenizer, whole_word_mask=...) with the same flag.
    """
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    wrap = cls_id is not None and sep_id is not None
    chunk = block_size - 2 if wrap else block_size
    if chunk < 1:
        raise ValueError(f"block_size={block_size} leaves no room for text between [CLS] and [SEP]")
    if text_column not in dataset.column_names:
        raise CorpusError(f"dataset has no column {text_column!r} (columns: {dataset.column_names})")
    offsets = whole_word_mask and whole_word_mask_needs_offsets()
    if offsets and not tokenizer.is_fast:
        raise ValueError("whole-word masking under transformers >= 5 needs a fast tokenizer (offset mapping)")

    def encode(batch):
        enc = tokenizer(batch[text_column], add_special_tokens=False, return_attention_mask=False,
                        return_offsets_mapping=offsets)
        columns: dict[str, list[list]] = {"input_ids": [], "special_tokens_mask": []}
        if offsets:
            columns["offset_mapping"] = []
        for k, ids in enumerate(enc["input_ids"]):
            tail = [sep_id] if sep_id is not None else []
            columns["input_ids"].append(list(ids) + tail)
            columns["special_tokens_mask"].append([0] * len(ids) + [1] * len(tail))
            if offsets:
                columns["offset_mapping"].append([list(o) for o in enc["offset_mapping"][k]] + [[0, 0]] * len(tail))
        grouped = group_texts(columns, chunk)
        if wrap:
            grouped["input_ids"] = [[cls_id, *b, sep_id] for b in grouped["input_ids"]]
            grouped["special_tokens_mask"] = [[1, *b, 1] for b in grouped["special_tokens_mask"]]
            if offsets:
                grouped["offset_mapping"] = [[[0, 0], *b, [0, 0]] for b in grouped["offset_mapping"]]
        grouped["attention_mask"] = [[1] * len(b) for b in grouped["input_ids"]]
        return grouped

    blocks = dataset.map(encode, batched=True, batch_size=map_batch_size, num_proc=num_proc,
                         remove_columns=dataset.column_names, desc="tokenize + group")
    if len(blocks) == 0:
        raise CorpusError(f"the corpus has fewer tokens than one block of {block_size} (per map batch of "
                          f"{map_batch_size} documents); use a smaller block_size or more text")
    return blocks


def mlm_collator(tokenizer, *, whole_word_mask: bool = False, mlm_probability: float = 0.15,
                 seed: int | None = None):
    """BERT's masking (Devlin et al. 2019): 15% of tokens, of which 80% -> [MASK], 10% random, 10% kept.

    With whole_word_mask all pieces of a chosen word are masked together, always with [MASK] (transformers
    replaces no token at random in that mode). `seed` makes the masking reproducible (transformers >= 5).
    """
    import transformers

    kwargs: dict[str, Any] = {"mlm_probability": mlm_probability}
    if whole_word_mask_needs_offsets():
        if seed is not None:
            kwargs["seed"] = seed
        with warnings.catch_warnings():  # the notice that whole-word mode replaces with [MASK] only
            warnings.filterwarnings("ignore", message="Random token replacement is not supported")
            return transformers.DataCollatorForLanguageModeling(tokenizer, whole_word_mask=whole_word_mask, **kwargs)
    if seed is not None:
        raise ValueError("a seeded collator needs transformers >= 5; seed the global RNG instead")
    cls = transformers.DataCollatorForWholeWordMask if whole_word_mask else transformers.DataCollatorForLanguageModeling
    return cls(tokenizer, **kwargs)
