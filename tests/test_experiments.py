"""The experiment scripts run end to end (tiny settings) and write their tables."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def test_digits_script_writes_the_table_and_skips_finished_runs(tmp_path):
    env = {**os.environ, "DOMAINADAPT_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(REPO / "experiments" / "digits.py"), "--quick", "--pairs", "mnist:optdigits",
           "--seeds", "0", "1", "--steps", "5", "--methods", "source_only", "dann", "target_oracle", "--jobs", "1", "--device", "cpu", "--out", str(tmp_path / "out")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    table = (tmp_path / "out" / "table.md").read_text()
    row = next(line for line in table.splitlines() if "mnist → optdigits" in line)
    assert row.count("(2)") == 3  # three methods, 2 seeds each
    assert "Gap closed (%)" in table
    runs = pd.read_csv(tmp_path / "out" / "runs.csv")
    assert len(runs) == 6 and set(runs["method"]) == {"source_only", "dann", "target_oracle"}
    assert runs["target_test/acc"].between(0, 1).all()
    assert "\\begin{tabular}" in (tmp_path / "out" / "table.tex").read_text()

    results = sorted((tmp_path / "out" / "runs").glob("*/result.json"))
    stamps = [p.stat().st_mtime_ns for p in results]
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0
    assert [p.stat().st_mtime_ns for p in results] == stamps  # finished runs are read, not re-run


def test_digits_script_rejects_an_unknown_domain_before_running(tmp_path):
    cmd = [sys.executable, str(REPO / "experiments" / "digits.py"), "--pairs", "mnist:nosuch", "--out", str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr and "unknown target domain 'nosuch'" in done.stderr
    assert not (tmp_path / "runs").exists()


def _script(name: str, args: list[str], tmp_path) -> subprocess.CompletedProcess:
    env = {**os.environ, "DOMAINADAPT_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(REPO / "experiments" / name), *args], env=env, capture_output=True,
                          text=True, timeout=900)


def test_permuted_mnist_script_fills_the_accuracy_matrix(tmp_path):
    done = _script("permuted_mnist.py", ["--tasks", "2", "--seeds", "0", "--steps", "3", "--out",
                                         str(tmp_path / "pm")], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = pd.read_csv(tmp_path / "pm" / "runs.csv")
    assert len(runs) == 3 * 2  # methods × tasks (one seed)
    final = runs[runs.after_task == 2]
    assert final["avg_acc"].between(0, 1).all() and final["bwt"].notna().all()
    assert "after task 2" in (tmp_path / "pm" / "table.md").read_text()


def test_forgetting_script_and_tradeoff_figure(tmp_path):
    done = _script("forgetting.py", ["--seeds", "0", "--steps", "2", "--jobs", "1", "--lambdas", "100",
                                     "--best-lambda", "100", "--alphas", "1", "--fisher-samples", "16",
                                     "--out", str(tmp_path / "fg")], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    frame = pd.read_csv(tmp_path / "fg" / "finetune.csv")
    assert {"finetune", "frozen", "online_ewc"} <= set(frame["variant"])
    assert (frame["forgetting"] == frame["source_before"] - frame["source_after"]).all()
    seq = pd.read_csv(tmp_path / "fg" / "sequence.csv")
    assert set(seq["method"]) == {"finetune", "ewc", "online_ewc", "l2sp", "frozen"}
    fig = subprocess.run([sys.executable, str(REPO / "paper_figures" / "forgetting_tradeoff.py"), "--results",
                          str(tmp_path / "fg" / "finetune.csv"), "--out", str(tmp_path / "figs")],
                         capture_output=True, text=True)
    assert fig.returncode == 0, fig.stderr[-2000:]
    assert (tmp_path / "figs" / "forgetting_tradeoff.png").stat().st_size > 10_000
