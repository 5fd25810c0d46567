"""The validator study: weighted Spearman (Musgrave et al. 2022), its bootstrap interval, the selection table,
and experiments/validators.py + paper_figures/validators.py end to end on tiny settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from domainadapt.evaluation.validator_study import (
    bootstrap_interval,
    correlation_table,
    selection_table,
    weighted_spearman,
)

REPO = Path(__file__).resolve().parents[1]


def test_weighted_spearman_by_hand():
    s, a = [0.1, 0.4, 0.2, 0.9], [0.5, 0.6, 0.8, 0.7]
    # dense ranks of s: 1, 3, 2, 4 → weights (r/4)²; ranks of a: 1, 2, 4, 3; weighted Pearson of the ranks
    w = np.array([1, 9, 4, 16]) / 16
    x, y = np.array([1, 3, 2, 4.0]), np.array([1, 2, 4, 3.0])
    mx, my = (w * x).sum() / w.sum(), (w * y).sum() / w.sum()
    expected = (w * (x - mx) * (y - my)).sum() / np.sqrt((w * (x - mx) ** 2).sum() * (w * (y - my) ** 2).sum())
    assert weighted_spearman(s, a) == pytest.approx(expected, rel=1e-12)
    assert weighted_spearman(s, a, power=0) == pytest.approx(spearmanr(s, a).correlation, rel=1e-12)  # unweighted
    assert weighted_spearman([1, 2, 3], [3, 4, 9]) == pytest.approx(1.0)
    assert weighted_spearman([1, 2, 3], [9, 4, 3]) == pytest.approx(-1.0)
    assert np.isnan(weighted_spearman([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError, match="finite"):
        weighted_spearman([1, np.nan], [1, 2])


def test_weighted_spearman_counts_the_top_scored_checkpoints_most():
    # the same rank errors, once among the lowest-scored checkpoints and once among the highest
    acc = np.arange(10.0)
    low_wrong = acc.copy()
    low_wrong[[0, 1]] = low_wrong[[1, 0]]
    high_wrong = acc.copy()
    high_wrong[[8, 9]] = high_wrong[[9, 8]]
    assert weighted_spearman(low_wrong, acc) > weighted_spearman(high_wrong, acc)


def test_bootstrap_interval_contains_the_statistic_and_is_seeded():
    rng = np.random.default_rng(0)
    s = rng.normal(size=200)
    a = s + rng.normal(size=200)
    stat = weighted_spearman(s, a)
    low, high = bootstrap_interval(lambda i: weighted_spearman(s[i], a[i]), 200, resamples=200, seed=1)
    assert low < stat < high and high - low < 0.4
    assert (low, high) == bootstrap_interval(lambda i: weighted_spearman(s[i], a[i]), 200, resamples=200, seed=1)


def test_selection_table_picks_within_each_run():
    frame = pd.DataFrame({
        "pair": "p", "method": "m", "run": ["r1"] * 3 + ["r2"] * 3, "step": [1, 2, 3] * 2,
        "target_acc": [0.5, 0.9, 0.7, 0.6, 0.4, 0.8], "good": [1, 3, 2, 2, 1, 3], "bad": [3, 1, 2, 3, 2, 1]})
    table = selection_table(frame, ["good", "bad"], group=["pair", "method"])
    row = table.loc[("p", "m")]
    assert row["last"] == pytest.approx((0.7 + 0.8) / 2) and row["oracle"] == pytest.approx((0.9 + 0.8) / 2)
    assert row["good"] == pytest.approx(row["oracle"]) and row["bad"] == pytest.approx((0.5 + 0.6) / 2)
    assert row["runs"] == 2
    corr = correlation_table(frame, ["good", "bad"], resamples=50)
    assert corr.loc["good", "weighted_spearman"] > 0.5 > corr.loc["bad", "weighted_spearman"]


def test_selection_table_across_runs_chooses_the_hyper_parameter_too():
    """With the seed as the unit, a validator chooses among both learning rates' checkpoints; "last" is the mean
    of the two runs' last checkpoints (a hyper-parameter picked at random)."""
    frame = pd.DataFrame({
        "pair": "p", "method": "m", "seed": 0, "lr": [1e-3] * 3 + [3e-4] * 3, "step": [1, 2, 3] * 2,
        "target_acc": [0.5, 0.9, 0.7, 0.6, 0.4, 0.8], "good": [1, 4, 2, 2, 1, 3], "bad": [3, 1, 2, 2, 2, 1]})
    table = selection_table(frame, ["good", "bad"], group=["pair", "method"], run="seed")
    row = table.loc[("p", "m")]
    assert row["last"] == pytest.approx((0.7 + 0.8) / 2) and row["oracle"] == pytest.approx(0.9)
    assert row["good"] == pytest.approx(0.9)  # lr 1e-3 at step 2, over lr 3e-4's best score (3, at step 3)
    assert row["bad"] == pytest.approx(0.5) and row["runs"] == 1


def test_validators_experiment_and_figure(tmp_path):
    env = {**os.environ, "DOMAINADAPT_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(REPO / "experiments" / "validators.py"), "--quick", "--pairs", "mnist:optdigits",
           "--methods", "source_only", "--lrs", "0.001", "0.0003", "--seeds", "0", "--steps", "20", "--jobs", "1",
           "--device", "cpu", "--resamples", "20", "--validators", "entropy", "source_val", "snd",
           "--out", str(tmp_path / "out")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    frame = pd.read_csv(tmp_path / "out" / "checkpoints.csv")
    assert sorted(frame["step"]) == sorted(2 * [2 * i for i in range(1, 11)])  # 10 evaluations per run, the last included
    assert frame[["entropy", "source_val", "snd"]].notna().all().all()
    assert "weighted_spearman" in (tmp_path / "out" / "correlation.md").read_text()
    selection = (tmp_path / "out" / "selection.md").read_text()
    assert selection.count("vs oracle") == 2 and "Checkpoint AND learning rate chosen together" in selection
    fig = subprocess.run([sys.executable, str(REPO / "paper_figures" / "validators.py"), "--results",
                          str(tmp_path / "out" / "checkpoints.csv"), "--out", str(tmp_path / "figs")],
                         capture_output=True, text=True, timeout=300)
    assert fig.returncode == 0, fig.stderr[-2000:]
    assert (tmp_path / "figs" / "validators.png").stat().st_size > 10_000
    bad = subprocess.run(cmd[:-1] + [str(tmp_path / "bad"), "--validators", "nope"], env=env, capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode == 2 and "nope" in bad.stderr


def test_digits_table_reports_the_checkpoint_a_validator_selects_and_the_oracle_apart(tmp_path):
    env = {**os.environ, "DOMAINADAPT_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(REPO / "experiments" / "digits.py"), "--quick", "--pairs", "mnist:optdigits",
           "--seeds", "0", "--steps", "20", "--methods", "source_only", "dann", "--jobs", "1", "--device", "cpu",
           "--select-by", "entropy", "--out", str(tmp_path / "out")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    table = (tmp_path / "out" / "table.md").read_text()
    assert "Selected by entropy" in table and "Oracle (apart, not a method)" in table
    runs = pd.read_csv(tmp_path / "out" / "runs.csv")
    for run_dir in runs["run_dir"]:
        result = json.loads((Path(run_dir) / "result.json").read_text())
        assert result["selected"]["entropy"]["step"] in range(2, 21, 2)  # one of the 10 evaluations
