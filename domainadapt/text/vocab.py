"""Vocabulary overlap between text domains: how much of their frequent vocabulary two corpora share.

Gururangan et al. (2020), "Don't Stop Pretraining", ACL, Figure 2: for each domain the top 10K most frequent
unigrams excluding stopwords, and the overlap of two domains = the percentage of those words they share
(e.g. PT–News 54.1%, PT–CS 19.1%, News–Reviews 40.0% there). A low overlap predicts a larger DAPT gain.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

WORD = re.compile(r"(?u)\b\w\w+\b")  # scikit-learn's CountVectorizer default: words of 2+ word characters


def _texts(corpus) -> Iterable[str]:
    """A list of strings, or a datasets.Dataset with a "text" column."""
    names = getattr(corpus, "column_names", None)
    if names is not None:
        if "text" not in names:
            raise ValueError(f"dataset has no 'text' column (columns: {names})")
        return corpus["text"]
    if isinstance(corpus, str):
        raise TypeError("pass an iterable of documents, not one string")
    return corpus


def unigram_counts(texts, tokenizer: Callable[[str], list[str]] | None = None,
                   stop_words: Iterable[str] | None = None) -> Counter:
    """Counts of lower-cased word unigrams, stop words removed (scikit-learn's ENGLISH_STOP_WORDS by default)."""
    if stop_words is None:
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS as stop_words
    stop = frozenset(stop_words)
    split = tokenizer or WORD.findall
    counts: Counter = Counter()
    for text in _texts(texts):
        counts.update(w for w in split(text.lower()) if w not in stop)
    return counts


def top_unigrams(texts, k: int = 10_000, tokenizer: Callable[[str], list[str]] | None = None,
                 stop_words: Iterable[str] | None = None) -> list[str]:
    """The k most frequent lower-cased unigrams excluding stop words (fewer if the corpus has fewer words).

    Ties are broken alphabetically, so the set is deterministic. `tokenizer` (str -> list of words) replaces
    the default regex (2+ word characters, as CountVectorizer); `stop_words` replaces ENGLISH_STOP_WORDS.
    """
    if k < 1:
        raise ValueError(f"k must be positive, not {k}")
    counts = unigram_counts(texts, tokenizer, stop_words)
    return [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]


def vocab_overlap(corpora: Mapping[str, Iterable[str]], k: int = 10_000,
                  tokenizer: Callable[[str], list[str]] | None = None) -> pd.DataFrame:
    """Square pandas.DataFrame (corpus × corpus) of vocabulary overlap in percent, Gururangan et al. Fig. 2.

    overlap(A, B) = 100 · |top_k(A) ∩ top_k(B)| / min(|top_k(A)|, |top_k(B)|), which is the paper's
    100 · |∩| / k whenever both corpora have at least k distinct unigrams; the min keeps a corpus' overlap with
    itself at 100 when it has fewer. `frame.attrs["sizes"]` holds |top_k| per corpus, and ["k"] the k.
    """
    import pandas as pd

    if not corpora:
        raise ValueError("vocab_overlap needs at least one corpus")
    tops = {name: set(top_unigrams(texts, k, tokenizer)) for name, texts in corpora.items()}
    empty = [name for name, top in tops.items() if not top]
    if empty:
        raise ValueError(f"no unigrams (after stop words) in corpus {empty}")
    names = list(tops)
    frame = pd.DataFrame(
        [[100.0 * len(tops[a] & tops[b]) / min(len(tops[a]), len(tops[b])) for b in names] for a in names],
        index=pd.Index(names, name="corpus"), columns=names)
    frame.attrs.update(k=k, sizes={name: len(top) for name, top in tops.items()})
    return frame


def overlap_long(frame: pd.DataFrame) -> pd.DataFrame:
    """The square overlap frame as rows (a, b, overlap) with a < b in the frame's order, for CSV files."""
    import pandas as pd

    names = list(frame.index)
    rows = [(a, b, float(frame.loc[a, b])) for i, a in enumerate(names) for b in names[i + 1:]]
    return pd.DataFrame(rows, columns=["a", "b", "overlap"])
