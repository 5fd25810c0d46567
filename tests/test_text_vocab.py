"""Vocabulary overlap (Gururangan et al. 2020, Fig. 2): top-k unigrams without stop words, and its figure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from domainadapt.text.vocab import (
    overlap_long,
    top_unigrams,
    unigram_counts,
    vocab_overlap,
)

REPO = Path(__file__).resolve().parents[1]
COMPUTING = ["The compiler compiles the program.", "A program runs; the kernel schedules the program."]
BOTANY = ["Leaves photosynthesise sunlight.", "Roots absorb water, leaves transpire water."]


def test_top_unigrams_lowercase_drop_stop_words_and_break_ties_alphabetically():
    assert top_unigrams(COMPUTING, k=3) == ["program", "compiler", "compiles"]
    assert "the" not in unigram_counts(COMPUTING) and unigram_counts(["A a I x"]) == {}  # 1-char words dropped
    assert top_unigrams(["b-b a-a"], k=5, tokenizer=str.split, stop_words=()) == ["a-a", "b-b"]
    with pytest.raises(ValueError):
        top_unigrams(COMPUTING, k=0)


def test_overlap_with_itself_is_100_and_with_a_disjoint_corpus_0():
    frame = vocab_overlap({"cs": COMPUTING, "bio": BOTANY, "cs again": list(COMPUTING)}, k=10)
    assert frame.loc["cs", "cs"] == 100 and frame.loc["cs", "cs again"] == 100
    assert frame.loc["cs", "bio"] == 0 and frame.loc["bio", "bio"] == 100
    assert frame.attrs["sizes"] == {"cs": 6, "bio": 7, "cs again": 6}


def test_overlap_is_the_shared_percentage_of_the_top_k():
    a = ["alpha beta gamma delta"] * 3 + ["zeta"]
    b = ["alpha beta omega sigma"] * 3 + ["zeta"]
    frame = vocab_overlap({"a": a, "b": b}, k=4)  # top-4: {alpha, beta, delta, gamma} vs {alpha, beta, omega, sigma}
    assert frame.loc["a", "b"] == frame.loc["b", "a"] == 50.0
    assert overlap_long(frame).to_dict("records") == [{"a": "a", "b": "b", "overlap": 50.0}]


def test_a_dataset_with_a_text_column_is_accepted():
    from datasets import Dataset

    frame = vocab_overlap({"ds": Dataset.from_dict({"text": COMPUTING}), "list": COMPUTING}, k=5)
    assert frame.loc["ds", "list"] == 100


def _figure(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "paper_figures" / "vocab_overlap.py"), *args],
                          check=False, capture_output=True, text=True, timeout=300)


def test_figure_script_draws_the_heatmap_from_an_overlap_table(tmp_path):
    results = tmp_path / "overlap.csv"
    pd.DataFrame({"a": ["foldoc", "foldoc", "jargon"], "b": ["jargon", "gcide", "gcide"],
                  "overlap": [41.5, 20.0, 30.2]}).to_csv(results, index=False)
    done = _figure(["--results", str(results), "--out", str(tmp_path / "figs")])
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "figs" / "vocab_overlap.png").stat().st_size > 10_000
    assert (tmp_path / "figs" / "vocab_overlap.pdf").is_file()


def test_figure_script_refuses_without_results(tmp_path):
    done = _figure(["--results", str(tmp_path / "none.csv"), "--out", str(tmp_path)])
    assert done.returncode == 2 and "no results" in done.stderr and "Traceback" not in done.stderr
