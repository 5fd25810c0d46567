"""General English without the computing domain: what a base model is pretrained on here, and the ¬DAPT control.

Gururangan et al. 2020 ("Don't Stop Pretraining", ACL, §2) continue pretraining RoBERTa, a model of general text,
on domain text. Offline, the base is pretrained from scratch (`experiments/pretrain_base.py`) on GCIDE definitions
(Webster 1913 and its additions; Debian dict-gcide) and WordNet 3.0 glosses (wordnet-base), and the domain — FOLDOC
and the Jargon File, experiments/dapt.py's DAPT corpus, which holds the FOLDOC task's text — must stay unseen. So
a general document is dropped when it shares any SHINGLE-word window (lower-cased words) with a FOLDOC or Jargon
document, or, shorter than SHINGLE words, equals one of theirs word for word; that removes copies and quotations, not only identical entries.

The documents left are split by a hash of their text (`parts`): base, control (unseen by the base; ¬DAPT's
text) and heldout (never trained on). Corpus specs (`sources.corpus_texts`):

    general:base     base + heldout documents      general:control  control + heldout documents
    general:all      every document kept

The held-out documents ride along so that every spec has the same general held-out set: a training corpus never
trains on them (masked_lm drops `is_heldout` text), and its held-out loss reads them.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

from .dictd import read_dictd
from .parts import document_part
from .wordnet import read_glosses

SHINGLE = 8  # words per window shared with the domain that drops a general document
DOMAIN_DICTIONARIES = ("foldoc", "jargon")
GENERAL_DICTIONARY = "gcide"
SPECS = {"base": ("base", "heldout"), "control": ("control", "heldout"), "all": ("base", "control", "heldout")}
_WORD = re.compile(r"\w+")


class GeneralCorpusError(ValueError):
    """A general:PART spec that names no part."""


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def shingles(text: str, n: int = SHINGLE) -> set[int]:
    """Hashes of the n-word windows of `text` (one hash of all its words when it has fewer than n). Python's hash
    is salted per process: compare sets built in the same process only."""
    w = words(text)
    if len(w) < n:
        return {hash(tuple(w))} if w else set()
    return {hash(tuple(w[i:i + n])) for i in range(len(w) - n + 1)}


def domain_shingles(domain_texts: Iterable[str], n: int = SHINGLE) -> set[int]:
    """The union of the domain documents' `shingles`: a general document longer than n words is dropped when it
    shares a window, a shorter one when its words equal a (short) domain document's."""
    banned: set[int] = set()
    for text in domain_texts:
        banned |= shingles(text, n)
    return banned


def shares_text(text: str, banned: set[int], n: int = SHINGLE) -> bool:
    return not shingles(text, n).isdisjoint(banned)


@dataclass(frozen=True)
class GeneralCorpus:
    """The general documents kept, by part, and how many of each source were dropped for sharing domain text."""

    parts: dict[str, list[str]]
    kept: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)

    def texts(self, spec_part: str) -> list[str]:
        if spec_part not in SPECS:
            raise GeneralCorpusError(f"unknown general corpus 'general:{spec_part}'; use "
                                     + ", ".join(f"general:{p}" for p in SPECS))
        wanted = set(SPECS[spec_part])
        return [t for part in ("base", "control", "heldout") if part in wanted for t in self.parts[part]]


def build_general_corpus(sources: dict[str, list[str]], domain_texts: Iterable[str], n: int = SHINGLE) -> GeneralCorpus:
    """Split `sources` (name -> documents) into parts after dropping every document that shares text with the domain;
    a document that two sources both hold is kept once."""
    banned = domain_shingles(domain_texts, n)
    parts: dict[str, list[str]] = {"base": [], "control": [], "heldout": []}
    kept, dropped, seen = Counter(), Counter(), set()
    for name, texts in sources.items():
        for text in texts:
            if not text.strip() or text in seen:
                continue
            seen.add(text)
            if shares_text(text, banned, n):
                dropped[name] += 1
                continue
            kept[name] += 1
            parts[document_part(text)].append(text)
    return GeneralCorpus(parts, dict(kept), dict(dropped))


@lru_cache(maxsize=2)
def _general_corpus(_where: tuple) -> GeneralCorpus:
    domain = [e.body for name in DOMAIN_DICTIONARIES for e in read_dictd(name)]
    sources = {f"dictd:{GENERAL_DICTIONARY}": [e.body for e in read_dictd(GENERAL_DICTIONARY)],
               "wordnet:glosses": read_glosses()}
    return build_general_corpus(sources, domain)


def general_corpus() -> GeneralCorpus:
    """GCIDE + WordNet glosses without FOLDOC / Jargon text, split into parts; built once per process and data
    location ($DOMAINADAPT_DICTD_DIR, $DOMAINADAPT_WORDNET_DIR)."""
    return _general_corpus((os.environ.get("DOMAINADAPT_DICTD_DIR"), os.environ.get("DOMAINADAPT_WORDNET_DIR")))


def clear_cache() -> None:
    _general_corpus.cache_clear()
