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
text can differ in a few entries (huggingface/tokenizers#1794, open) — train it once and keep the folder, as
`experiments/pretrain_base.py` does.
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
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertTokenizerFast

    if vocab_size < len(SPECIAL_TOKENS) + 1:
        raise BaseModelError(f"vocab_size must exceed the {len(SPECIAL_TOKENS)} special tokens, not {vocab_size}")
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS)))
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
