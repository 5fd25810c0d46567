"""Text corpora: load_text specs, the FOLDOC subject task's splits, and MLM blocks for the collator."""

from __future__ import annotations

import json

import pytest
import torch
from text_fixtures import tiny_texts, tiny_tokenizer, write_dictd

from domainadapt.text.corpora import (
    CorpusError,
    exclude_headwords,
    foldoc_subject_task,
    group_texts,
    load_text,
    mlm_collator,
    tokenize_corpus,
)
from domainadapt.text.dictd import DictEntry


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Tiny models: one torch thread per test, restored after (see conftest.py), instead of setting it for the
    whole session at import time."""


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


def test_dictd_spec_gives_bodies_and_can_exclude_headwords(tmp_path, monkeypatch):
    write_dictd(tmp_path, "tiny")
    monkeypatch.setenv("DOMAINADAPT_DICTD_DIR", str(tmp_path))
    texts = load_text("dictd:tiny")["text"]
    assert len(texts) == 6 and "A program that turns {source code} into machine code." in texts
    kept = load_text("dictd:tiny", exclude=["COMPILER", "packets"])["text"]  # case-insensitive, aliases too
    assert len(kept) == 4 and not any("machine code" in t or "unit of data" in t for t in kept)


def test_file_specs_read_txt_csv_and_jsonl(tmp_path):
    (tmp_path / "a.txt").write_text("first doc\n\n  \nsecond doc\n")
    assert list(load_text(f"file:{tmp_path / 'a.txt'}", cache_dir=tmp_path / "c")["text"]) == ["first doc", "second doc"]
    (tmp_path / "b.csv").write_text("id,body\n1,hello there\n2,general kenobi\n")
    csv = load_text(f"file:{tmp_path / 'b.csv'}", text_column="body", cache_dir=tmp_path / "c")
    assert csv.column_names == ["text"] and list(csv["text"]) == ["hello there", "general kenobi"]
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps({"text": t, "n": i}) for i, t in enumerate("xyz")))
    assert list(load_text(f"file:{tmp_path / 'c.jsonl'}", cache_dir=tmp_path / "c")["text"]) == ["x", "y", "z"]


def test_bad_specs_fail_with_a_message_naming_them(tmp_path):
    with pytest.raises(CorpusError, match="unknown corpus spec 'web:x'"):
        load_text("web:x")
    with pytest.raises(CorpusError, match="does not exist"):
        load_text(f"file:{tmp_path / 'none.txt'}")
    with pytest.raises(CorpusError, match=r"\.xml"):
        load_text(f"file:{tmp_path / 'doc.xml'}")
    (tmp_path / "b.csv").write_text("id,body\n1,hello\n")
    with pytest.raises(CorpusError, match="no column 'text'.*body"):
        load_text(f"file:{tmp_path / 'b.csv'}", cache_dir=tmp_path / "c")
    (tmp_path / "empty.txt").write_text("\n   \n")
    with pytest.raises(CorpusError, match="no non-empty text"):
        load_text(f"file:{tmp_path / 'empty.txt'}", cache_dir=tmp_path / "c")


def synthetic_foldoc(per_subject: int = 30) -> list[DictEntry]:
    """Entries with one subject each (30, 25, 20, 15 of 4 subjects), plus ambiguous, duplicate and untagged ones."""
    entries = []
    for s, subject in enumerate(["networking", "language", "hardware", "games"]):
        for i in range(per_subject - 5 * s):
            entries.append(DictEntry(f"{subject}-{i}", f"text {i} about {subject}", (subject,)))
    entries += [DictEntry(f"both-{i}", "two classes", ("networking", "language")) for i in range(3)]
    entries += [DictEntry(f"extra-{i}", "one class + a rare tag", ("hardware", "rare")) for i in range(2)]
    entries += [DictEntry("networking-0", "a duplicate headword", ("networking",)), DictEntry("plain", "no tag")]
    return entries


def test_foldoc_task_has_k_classes_with_train_per_class_and_disjoint_headwords():
    task = foldoc_subject_task(synthetic_foldoc(), num_classes=3, train_per_class=4, test_per_class=6, seed=0)
    assert task.label_names == ("networking", "language", "hardware")  # by frequency, "games" is 4th
    assert sorted(task.train["label"]) == sorted([0, 1, 2] * 4)
    assert sorted(task.test["label"]) == sorted([0, 1, 2] * 6)
    train, test, rest = set(task.train["headword"]), set(task.test["headword"]), set(task.unlabeled["headword"])
    assert not train & test and not (train | test) & rest
    assert len(train | test | rest) == 30 + 25 + 20 + 2  # three classes + "extra" (exclusive), no "both-*"
    assert not any(h.startswith("both") for h in train | test | rest)
    assert task.test_headwords == frozenset(test)
    assert len(task.tapt_corpus()) == len(task.train) + len(task.unlabeled)


def test_foldoc_task_is_seeded():
    def run(seed):
        task = foldoc_subject_task(synthetic_foldoc(), num_classes=3, train_per_class=4, test_per_class=6, seed=seed)
        return list(task.train["headword"]), list(task.test["headword"])

    assert run(0) == run(0)
    assert run(0) != run(1)


def test_foldoc_task_first_rule_and_too_small_classes():
    task = foldoc_subject_task(synthetic_foldoc(), num_classes=2, train_per_class=2, test_per_class=2, rule="first")
    assert "both-0" in set(task.train["headword"]) | set(task.test["headword"]) | set(task.unlabeled["headword"])
    with pytest.raises(ValueError, match="too few entries.*games"):
        foldoc_subject_task(synthetic_foldoc(), num_classes=4, train_per_class=4, test_per_class=12)


def test_test_headwords_can_be_excluded_from_a_dapt_corpus():
    entries = synthetic_foldoc()
    task = foldoc_subject_task(entries, num_classes=3, train_per_class=4, test_per_class=6)
    kept = exclude_headwords(entries, task.test_headwords)
    assert len(kept) == len(entries) - 18 and not {e.headword for e in kept} & task.test_headwords


def test_group_texts_cuts_blocks_and_loses_only_the_remainder():
    docs = {"input_ids": [list(range(7)), list(range(7, 12)), list(range(12, 23))],
            "mask": [[0] * 7, [1] * 5, [0] * 11]}
    out = group_texts(docs, 4)
    assert out["input_ids"] == [list(range(i, i + 4)) for i in range(0, 20, 4)]  # 23 tokens -> 5 blocks, 3 dropped
    assert [len(b) for b in out["mask"]] == [4] * 5 and out["mask"][1] == [0, 0, 0, 1]


def test_tokenize_corpus_gives_full_cls_sep_blocks(tokenizer):
    from datasets import Dataset

    texts = tiny_texts(40, seed=3)
    blocks = tokenize_corpus(Dataset.from_dict({"text": texts}), tokenizer, block_size=16)
    ids = torch.tensor(blocks["input_ids"])
    assert ids.shape[1] == 16 and (ids[:, 0] == tokenizer.cls_token_id).all()
    assert (ids[:, -1] == tokenizer.sep_token_id).all() and torch.tensor(blocks["attention_mask"]).all()
    special = torch.tensor(blocks["special_tokens_mask"]).bool()
    assert torch.equal(special, (ids == tokenizer.cls_token_id) | (ids == tokenizer.sep_token_id))
    n_tokens = sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) + 1 for t in texts)  # + [SEP] per doc
    assert n_tokens - 14 < ids.numel() - 2 * len(ids) <= n_tokens  # only the remainder (< 14) is dropped
    collator = mlm_collator(tokenizer, seed=0)
    batch = collator([blocks[i] for i in range(len(blocks))])
    masked = batch["labels"] != -100
    assert not masked[special].any() and 0.05 < masked.float().mean() < 0.3
    assert torch.equal(batch["labels"][masked], ids[masked])


def test_whole_word_masking_masks_every_piece_of_a_word(tokenizer):
    from datasets import Dataset

    texts = ["compiler kernel processor protocol database " * 4] * 6
    blocks = tokenize_corpus(Dataset.from_dict({"text": texts}), tokenizer, 24, whole_word_mask=True)
    batch = mlm_collator(tokenizer, whole_word_mask=True, seed=0)([blocks[i] for i in range(len(blocks))])
    masked = (batch["labels"] != -100)
    assert masked.any()
    tokens = [tokenizer.convert_ids_to_tokens(row) for row in torch.tensor(blocks["input_ids"]).tolist()]
    for r, row in enumerate(tokens):  # a continuation piece "##x" is masked iff the piece before it is
        for i in range(1, len(row)):
            if row[i].startswith("##") and row[i - 1] != "[CLS]":  # (a block may start inside a word)
                assert masked[r, i] == masked[r, i - 1]
    assert (batch["input_ids"][masked] == tokenizer.mask_token_id).all()  # whole words: always [MASK]
