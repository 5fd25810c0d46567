"""A tiny random BERT and a WordPiece tokenizer trained on the spot: text tests never download anything."""

from __future__ import annotations

import torch

WORDS = ("the", "network", "sends", "packets", "over", "a", "protocol", "while", "compiler", "turns", "program", "into",
         "machine", "code", "database", "stores", "tables", "and", "kernel", "schedules", "processes", "on",
         "processor", "memory", "cache", "disk")
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def tiny_texts(n: int = 60, seed: int = 0, words: tuple[str, ...] | list[str] = WORDS) -> list[str]:
    """n pseudo-sentences of 4-20 words drawn from `words`."""
    g = torch.Generator().manual_seed(seed)
    texts = []
    for _ in range(n):
        length = int(torch.randint(4, 21, (1,), generator=g))
        picks = torch.randint(0, len(words), (length,), generator=g).tolist()
        texts.append(" ".join(words[i] for i in picks) + ".")
    return texts


def tiny_tokenizer(texts: list[str] | None = None, vocab_size: int = 120):
    """A BERT-style (lower-casing, [CLS] x [SEP]) fast WordPiece tokenizer trained on `texts`."""
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(texts or tiny_texts(), trainers.WordPieceTrainer(vocab_size=vocab_size,
                                                                            special_tokens=SPECIALS))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                       special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]")


def tiny_bert(vocab_size: int, seed: int = 0):
    """A random BertForMaskedLM: hidden 32, 2 layers, 2 heads (decoder tied to the word embeddings)."""
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    return BertForMaskedLM(config).eval()


def save_tiny_bert(folder, words, seed: int = 0):
    """A random 2-layer BERT (hidden 32) and a BertTokenizerFast over a WordPiece vocab of `words`, saved with
    save_pretrained into `folder` (a local model folder, as a user has after downloading one); returns `folder`."""
    from pathlib import Path

    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = folder.parent / f"{folder.name}-vocab.txt"
    vocab.write_text("\n".join([*SPECIALS, *sorted(set(words) | {"."})]) + "\n")
    tokenizer = BertTokenizerFast(vocab=str(vocab))  # transformers 5: `vocab` (a path or a dict); vocab_file is ignored
    assert tokenizer.unk_token_id not in tokenizer(" ".join(sorted(words)[:3]))["input_ids"]
    torch.manual_seed(seed)
    model = BertForMaskedLM(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                       intermediate_size=64, vocab_size=len(tokenizer), max_position_embeddings=64))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


# ------------------------------------------------------------------------------------ a dictd dictionary on disk

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

# (index headwords, raw definition text as dictd stores it), FOLDOC-style unless noted
FOLDOC_LIKE = [
    (["00-database-info", "00-tiny-info"], "This file was converted from the original database\n"),
    (["00databaseshort"], "00-database-short\n     A tiny test dictionary\n"),
    (["packet", "packets"], ("packet\npackets\n\n   <networking> A unit of data sent over a\n   {network}.\n\n"
                             "   (1996-06-25)\n")),
    (["compiler"], "compiler\n\n   <programming, language>   A program that turns {source code}\n   into machine code.\n"),
    (["language for tiny investigation of abstractions", "ltia"],
     ("Language for Tiny Investigation of\nAbstractions\nLTIA\n\n   <language> A wrapped headword, written by\n"
      "   Jo <jo@example.org>.\n")),
    (["kernel"], "kernel\n\n   1. <operating system> The core of an OS.\n\n   2. <mathematics> The null space.\n"),
    (["foo"], "foo\n\n   A metasyntactic variable with no subject.\n"),
    (["Diluent"], 'Diluent \\Dil"u*ent\\, a. [L. diluens.]\n   Diluting; making thinner. [1913 Webster]\n'),  # GCIDE-style
]


def b64_number(value: int) -> str:
    digits = ""
    while True:
        value, digit = divmod(value, 64)
        digits = B64[digit] + digits
        if value == 0:
            return digits


def write_dictd(folder, name: str = "tiny", entries=FOLDOC_LIKE, compress: bool = True, index_lines=None):
    """Write NAME.index + NAME.dict.dz (gzip; dictzip is gzip-compatible) or NAME.dict; return the index path.

    Entries are stored in the given order; the index is sorted by headword, one line per headword.
    `index_lines` (extra raw lines) lets a test break the index.
    """
    import gzip
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data, lines = b"", []
    for headwords, text in entries:
        raw = text.encode("utf-8")
        lines += [f"{h}\t{b64_number(len(data))}\t{b64_number(len(raw))}" for h in headwords]
        data += raw
    if compress:
        with gzip.open(folder / f"{name}.dict.dz", "wb") as f:
            f.write(data)
    else:
        (folder / f"{name}.dict").write_bytes(data)
    index = folder / f"{name}.index"
    index.write_text("\n".join(sorted(lines, key=str.lower) + list(index_lines or [])) + "\n", encoding="utf-8")
    return index


# ------------------------------------------------------------------------------------------- WordNet on disk

WORDNET_HEADER = "  1 This software and database is being provided to you, the LICENSEE, by\n  2 Princeton University\n"


def wordnet_line(offset: str, words: list[str], gloss: str, pos: str = "n") -> str:
    """One wndb(5WN) data line: offset, lex_filenum, ss_type, w_cnt (hex), words with lex_ids, no pointers, gloss."""
    fields = " ".join(f"{w} 0" for w in words)
    return f"{offset} 05 {pos} {len(words):02x} {fields} 000 | {gloss}  \n"


def write_wordnet(folder, glosses: dict):
    """data.noun / data.verb / data.adj / data.adv under `folder` from {pos: [(words, gloss), ...]}; returns it."""
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for pos in ("noun", "verb", "adj", "adv"):
        lines = [wordnet_line(f"{k:08d}", words, gloss, pos[0]) for k, (words, gloss) in enumerate(glosses.get(pos, []))]
        (folder / f"data.{pos}").write_text(WORDNET_HEADER + "".join(lines), encoding="utf-8")
    return folder
