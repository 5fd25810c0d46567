"""Text domains for domain- and task-adaptive pretraining (Gururangan et al., 2020, "Don't Stop Pretraining").

dictd     offline corpora from Debian's dictd dictionaries (FOLDOC, Jargon, GCIDE)
wordnet   WordNet 3.0 glosses (Debian wordnet-base) as general-English documents
general   GCIDE + WordNet without any FOLDOC / Jargon text, in fixed parts (base / control / held-out)
parts     which part a document belongs to, by a hash of its text
corpora   corpus specs -> datasets.Dataset, the FOLDOC subject task, MLM blocks and collator
mlm       masked-LM loss at the masked positions only, masked blocks, model loading (MiniLM)
clm       causal-LM (next-token) loss, token blocks, loading any AutoModelForCausalLM
base_model  a WordPiece tokenizer and a small BERT / GPT-2 built from nothing (experiments/pretrain_base.py)
sources   corpus specs, the held-out policy, the FOLDOC subject task, labelled token rows
vocab     top-k unigram vocabulary overlap between corpora (the paper's Figure 2)

Names are loaded from their submodule on first use, so importing this package stays cheap (no torch).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "dictd": ("DictEntry", "DictdError", "DictdFormatError", "DictdNotFoundError", "dictd_path", "iter_dictd",
              "read_dictd"),
    "corpora": ("CorpusError", "SubjectTask", "entries_dataset", "exclude_headwords", "foldoc_subject_task",
                "group_texts", "load_text", "mlm_collator", "subject_counts", "tokenize_corpus"),
    "mlm": ("MiniLMNotInstalledError", "lm_head", "load_masked_lm", "masked_lm_loss", "minilm_path"),
    "vocab": ("overlap_long", "top_unigrams", "unigram_counts", "vocab_overlap"),
    "wordnet": ("WordNetError", "read_glosses", "wordnet_dir"),
    "general": ("general_corpus",),
    "clm": ("causal_lm_loss", "load_causal_lm"),
    "base_model": ("fresh_model", "train_wordpiece"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = ["CorpusError", "DictEntry", "DictdError", "DictdFormatError", "DictdNotFoundError",
    "MiniLMNotInstalledError", "SubjectTask", "WordNetError", "causal_lm_loss", "dictd_path", "entries_dataset",
    "exclude_headwords", "foldoc_subject_task", "fresh_model", "general_corpus", "group_texts", "iter_dictd",
    "lm_head", "load_causal_lm", "load_masked_lm", "load_text", "masked_lm_loss", "minilm_path", "mlm_collator",
    "overlap_long", "read_dictd", "read_glosses", "subject_counts", "tokenize_corpus", "top_unigrams",
    "train_wordpiece", "unigram_counts", "vocab_overlap", "wordnet_dir"]


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
