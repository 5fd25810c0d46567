"""A base language model from nothing: a WordPiece tokenizer trained on general text, and a small BERT (masked LM)
or GPT-2 (causal LM) on that vocabulary, written as a Hugging Face model folder for the shared trainer to pretrain.

No package ships a general masked LM with its head (DESIGN.md), so `experiments/pretrain_base.py` builds one here, in
the setting of Gururangan et al. 2020 (a general LM, then continued pretraining on the domain): the tokenizer and
the model see only general text (`text.general`), never the domain. Sizes follow BERT's shape rules (Turc et al.
2019, "Well-Read Students Learn Better", Table 1 names BERT-mini 4 × 256 and BERT-tiny 2 × 128): 4 attention
heads of 64 dimensions per 256, feed-forward 4 × hidden.

The tokenizer is Hugging Face `tokenizers` (WordPiece, BERT's normaliser and pre-tokeniser), wrapped as a
`BertTokenizerFast`; one tokenizer serves both kinds (the causal model reads [CLS] as its start token and [SEP] as
its end). Its trainer is not deterministic: it breaks count ties in hash-map order, so two trainings on the same
text can differ in a few entries (huggingface/tokenizers#1794, open). A trained vocabulary is pinned by writing its
entries (`vocab_lines`) and reading them back (`wordpiece_from_vocab`); `experiments/pretrain_base.py` ships its
default vocabulary that way.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
KINDS = ("masked", "causal")


@dataclass(frozen=True)
class BaseSize:
    layers: int
    hidden: int

    @property
    def heads(self) -> int:
        return max(1, self.hidden // 64)


SIZES = {"mini": BaseSize(layers=4, hidden=256), "tiny": BaseSize(layers=2, hidden=128)}


class BaseModelError(ValueError):
    """A base-model request that cannot be built (the message names the field)."""


def train_wordpiece(texts: Iterable[str], vocab_size: int):
    """A lower-casing BERT WordPiece tokenizer ([CLS] text [SEP]) trained on `texts`, as a BertTokenizerFast."""
    from tokenizers import Tokenizer, models, trainers

    if vocab_size < len(SPECIAL_TOKENS) + 1:
        raise BaseModelError(f"vocab_size must exceed the {len(SPECIAL_TOKENS)} special tokens, not {vocab_size}")
    tok = _bert_pipeline(Tokenizer(models.WordPiece(unk_token="[UNK]")))
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS)))
    return _as_bert_tokenizer(tok)


def wordpiece_from_vocab(vocab_file: str | os.PathLike):
    """The tokenizer `train_wordpiece` builds, read back from its vocabulary (one entry per line, the line number is
    the id: `vocab_lines` writes it). This is how a trained vocabulary is pinned: the WordPiece trainer breaks count
    ties in hash order, so retraining on the same text may not give the same entries (huggingface/tokenizers#1794)."""
    from tokenizers import Tokenizer, models

    path = Path(vocab_file)
    try:
        entries = path.read_text(encoding="utf-8").split("\n")
    except OSError as err:
        raise BaseModelError(f"cannot read the vocabulary {path}: {err.strerror or err}") from err
    if entries and entries[-1] == "":
        entries.pop()
    if tuple(entries[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS or len(set(entries)) != len(entries) or "" in entries:
        raise BaseModelError(f"{path} is not a WordPiece vocabulary of this module: it must start with "
                             f"{', '.join(SPECIAL_TOKENS)} and hold each entry once, one per line")
    vocab = {entry: i for i, entry in enumerate(entries)}
    return _as_bert_tokenizer(_bert_pipeline(Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))))


def vocab_lines(tokenizer) -> str:
    """`tokenizer`'s vocabulary as `wordpiece_from_vocab` reads it: entries in id order, one per line."""
    by_id = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    if [i for _, i in by_id] != list(range(len(by_id))):
        raise BaseModelError("the tokenizer's ids are not 0..n-1 without gaps")
    return "".join(entry + "\n" for entry, _ in by_id)


def _bert_pipeline(tok):
    """BERT's lower-casing normaliser, pre-tokeniser and WordPiece decoder on a `tokenizers.Tokenizer`."""
    from tokenizers import decoders, normalizers, pre_tokenizers

    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    return tok


def _as_bert_tokenizer(tok):
    """[CLS] text [SEP] (pairs: [CLS] a [SEP] b [SEP]) around `tok`, wrapped as a BertTokenizerFast."""
    from tokenizers import processors
    from transformers import BertTokenizerFast

    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                       special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return BertTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                             sep_token="[SEP]", mask_token="[MASK]", do_lower_case=True)


def fresh_model(kind: str, size: str | BaseSize, tokenizer, max_positions: int = 512):
    """A randomly initialised BertForMaskedLM ("masked") or GPT2LMHeadModel ("causal") for `tokenizer`. Seed
    torch first for a fixed draw."""
    from transformers import BertConfig, BertForMaskedLM, GPT2Config, GPT2LMHeadModel

    shape = SIZES[size] if isinstance(size, str) and size in SIZES else size
    if not isinstance(shape, BaseSize):
        raise BaseModelError(f"unknown base size {size!r}; choose from {', '.join(SIZES)}")
    if kind == "masked":
        config = BertConfig(vocab_size=len(tokenizer), hidden_size=shape.hidden, num_hidden_layers=shape.layers,
                            num_attention_heads=shape.heads, intermediate_size=4 * shape.hidden,
                            max_position_embeddings=max_positions, pad_token_id=tokenizer.pad_token_id)
        return BertForMaskedLM(config)
    if kind == "causal":
        config = GPT2Config(vocab_size=len(tokenizer), n_embd=shape.hidden, n_layer=shape.layers, n_head=shape.heads,
                            n_positions=max_positions, bos_token_id=tokenizer.cls_token_id,
                            eos_token_id=tokenizer.sep_token_id, pad_token_id=tokenizer.pad_token_id)
        return GPT2LMHeadModel(config)
    raise BaseModelError(f"unknown base kind {kind!r}; choose from {', '.join(KINDS)}")


def save_model_folder(folder: str | os.PathLike, model, tokenizer) -> Path:
    """`model` and `tokenizer` via save_pretrained into `folder`, written next to it first and renamed into place,
    so a crash leaves either the whole folder or none (an existing folder is an error: nothing is overwritten)."""
    folder = Path(folder)
    if folder.exists():
        raise BaseModelError(f"{folder} already exists; remove it or choose another folder")
    partial = folder.with_name(folder.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    os.replace(partial, folder)
    return folder
