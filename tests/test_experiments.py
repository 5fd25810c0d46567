"""The experiment scripts run end to end (tiny settings) and write their tables."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from domainadapt.evaluation import forgetting

REPO = Path(__file__).resolve().parents[1]


def test_digits_script_writes_the_table_and_skips_finished_runs(tmp_path):
    env = {**os.environ, "DOMAINADAPT_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(REPO / "experiments" / "digits.py"), "--quick", "--pairs", "mnist:optdigits",
           "--seeds", "0", "1", "--steps", "20", "--methods", "source_only", "dann", "target_oracle", "--jobs", "1", "--device", "cpu", "--out", str(tmp_path / "out")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    table = (tmp_path / "out" / "table.md").read_text()
    row = next(line for line in table.splitlines() if "mnist → optdigits" in line)
    assert row.count("(2)") == 3  # three methods, 2 seeds each
    assert "Gap closed (%)" in table
    runs = pd.read_csv(tmp_path / "out" / "runs.csv")
    assert len(runs) == 6 and set(runs["method"]) == {"source_only", "dann", "target_oracle"}
    # 20 steps are enough for the target oracle (trained on optdigits' labels) to beat source-only on optdigits in
    # every seed by a wide margin; measured oracle 0.76 / 0.84 vs source-only 0.28 / 0.29 (5 steps gave 0.19 vs 0.15)
    acc = runs.pivot(index="seed", columns="method", values="target_test/acc")
    assert (acc["target_oracle"] > acc["source_only"] + 0.2).all(), acc
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
    done = _script("permuted_mnist.py", ["--tasks", "2", "--seeds", "0", "--steps", "10", "--out",
                                         str(tmp_path / "pm")], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = pd.read_csv(tmp_path / "pm" / "runs.csv")
    assert len(runs) == 3 * 2  # methods × tasks (one seed)
    # the accuracy matrix rows the script prints ("plain seed 0 task 1: 0.479 0.523", 3 decimals)
    R = {}
    for method, k, row in re.findall(r"^(\w+) seed 0 task (\d): ([\d. ]+)$", done.stdout, flags=re.M):
        R.setdefault(method, np.full((2, 2), np.nan))[int(k)] = [float(a) for a in row.split()]
    assert set(R) == {"plain", "l2", "ewc"} and not any(np.isnan(r).any() for r in R.values())
    for method, r in R.items():
        # 10 steps learn each task well above the other, untrained permutation (chance 0.1); measured
        # R = [[0.563, 0.110], [0.479, 0.523]] for all three methods
        assert r[0, 0] > r[0, 1] + 0.2 and r[1, 1] > r[0, 1] + 0.2, (method, r)
        # the table's numbers are the matrix's: ACC after each task, BWT = R[1, 0] − R[0, 0] = −forgetting
        after1, after2 = (runs[(runs.method == method) & (runs.after_task == t)].iloc[0] for t in (1, 2))
        assert after1.avg_acc == pytest.approx(r[0, 0], abs=1e-3)
        assert after2.avg_acc == pytest.approx(r[1].mean(), abs=1e-3)
        assert after2.bwt == pytest.approx(r[1, 0] - r[0, 0], abs=1e-3)
        assert forgetting(r)[0] == pytest.approx(-after2.bwt, abs=1e-3)
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


def test_forgetting_script_few_labels_sgd_without_batch_norm(tmp_path):
    """The regime flags reach the runs: pre-training keeps Adam, fine-tuning takes SGD and the few-label subset,
    both drop BatchNorm; the table states the regime and the zero-Fisher fraction."""
    import json

    done = _script("forgetting.py", ["--seeds", "0", "--steps", "2", "--jobs", "1", "--targets", "mnist_m", "--no-sequence",
                                     "--no-batch-norm", "--target-per-class", "7", "--optimizer", "sgd", "--lr", "0.01",
                                     "--lambdas", "100", "--best-lambda", "100", "--alphas", "1", "--fisher-samples", "16",
                                     "--out", str(tmp_path / "fg")], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    configs = [json.loads(f.read_text())["config"] for f in (tmp_path / "fg" / "runs").glob("*/config.json")]
    pre = [c for c in configs if c["method"] == "source_only"]
    fine = [c for c in configs if c["method"] == "target_oracle"]
    assert len(pre) == 1 and len(fine) == 5  # finetune, ewc, online_ewc, l2sp, frozen
    assert pre[0]["optimizer"] == "adam" and pre[0].get("target_per_class") is None
    assert all(c["optimizer"] == "sgd" and c["lr"] == 0.01 and c["target_per_class"] == 7 for c in fine)
    assert all(c["backbone_kwargs"] == {"batch_norm": False} for c in configs)
    table = (tmp_path / "fg" / "table.md").read_text()
    assert "7 target labels per class, SGD (momentum 0.9) 0.01" in table and "without BatchNorm" in table
    assert "% of its parameters" in table and not (tmp_path / "fg" / "sequence.csv").read_text().strip().count("\n")
    too_few = _script("forgetting.py", ["--target-per-class", "3", "--out", str(tmp_path / "bad")], tmp_path)
    assert too_few.returncode == 2 and "30 labelled digits" in too_few.stderr and not (tmp_path / "bad").exists()


def _digits_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("digits_experiment", REPO / "experiments" / "digits.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_digits_method_args_reach_their_method_and_source_free_runs_start_from_the_same_seeds_source(tmp_path):
    digits = _digits_module()
    args = digits.argparse.Namespace(preset="quick", steps=None, pairs=["mnist:mnist_m"], methods=["shot", "dann"],
                                     method_arg=["shot:beta=0.1", "dann:weight=0.5"], seeds=[0, 1], device="cpu",
                                     lr_for=["shot=0.0002"], select_by=None,
                                     data_root=None, out=tmp_path)
    configs = digits.build_configs(args)
    by = {(c.method, c.seed): c for c in configs}
    assert sorted(by) == [("dann", 0), ("dann", 1), ("shot", 0), ("shot", 1), ("source_only", 0), ("source_only", 1)]
    assert by[("shot", 0)].validate().method_kwargs == {"beta": 0.1}  # text converted to the option's type
    assert by[("dann", 1)].validate().method_kwargs == {"weight": 0.5} and by[("source_only", 0)].method_kwargs == {}
    assert by[("shot", 0)].lr == 0.0002 and by[("dann", 0)].lr == digits.RECIPE["lr"]
    for seed in (0, 1):
        assert by[("shot", seed)].init_from == str(tmp_path / "runs" / digits.run_name(by[("source_only", seed)]))
        assert by[("dann", seed)].init_from is None
    assert digits.expand_methods(["all"])[0] == "source_only" and "masked_lm" not in digits.expand_methods(["all"])


def test_digits_method_arg_errors_name_the_problem(tmp_path):
    base = [sys.executable, str(REPO / "experiments" / "digits.py"), "--methods", "dann", "--out", str(tmp_path)]
    for extra, message in ((["--method-arg", "dann:weight"], "--method-arg takes METHOD:KEY=VALUE"),
                           (["--method-arg", "shot:beta=1"], "method 'shot' is not in --methods"),
                           (["--method-arg", "dann:weight=abc"], "option 'weight' must be a number, got 'abc'"),
                           (["--lr-for", "dann=fast"], "the learning rate must be a number")):
        done = subprocess.run(base + extra, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and message in done.stderr, done.stderr
    assert not (tmp_path / "runs").exists()


def test_digits_lists_each_method_below_source_only_with_its_measured_reasons():
    digits = _digits_module()
    frame = pd.DataFrame({
        "pair": ["a → b"] * 5, "method": ["source_only", "source_only", "dann", "dann", "coral"],
        "target_test/acc": [0.40, 0.50, 0.30, 0.44, 0.60], "source_test/acc": [0.9, 0.9, 0.5, 0.7, 0.9],
        "health": ["", "", "discriminator_won", "", ""]})
    below = digits.below_source_only(frame)
    assert below.to_dict("records") == [{"pair": "a → b", "method": "dann", "target %": 37.0,
                                         "source_only target %": 45.0, "source %": 60.0,
                                         "source_only source %": 90.0, "health codes": "discriminator_won"}]
