"""collect → DataFrame → mean ± std tables; the CLI `table`; seed statistics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from domainadapt.cli import main
from domainadapt.evaluation import mean_std, t_interval
from domainadapt.report import collect, gap_closed, render, summary_table
from domainadapt.runs import run
from domainadapt.train import TrainConfig

from toy import write_toy_pair

ACC = {("source_only", 0): 0.50, ("source_only", 1): 0.54, ("source_only", 2): 0.55,
       ("target_oracle", 0): 0.95, ("target_oracle", 1): 0.97}


def _fake_runs(root: Path) -> None:
    for (method, seed), acc in ACC.items():
        cfg = TrainConfig(method=method, source="mnist", target="mnist_m", seed=seed)
        d = root / f"{method}-{seed}"
        d.mkdir(parents=True)
        (d / "result.json").write_text(json.dumps({"config": cfg.to_dict(), "config_hash": cfg.config_hash(),
                                                   "metrics": {"target_test/acc": acc}, "steps": 1, "train_seconds": 1.0}))
    (root / "unfinished").mkdir()  # no result.json: not a row


def test_collect_reads_finished_runs_only(tmp_path):
    _fake_runs(tmp_path)
    frame = collect([tmp_path])
    assert len(frame) == 5
    assert set(frame["method"]) == {"source_only", "target_oracle"}


def test_table_cells_are_mean_std_n(tmp_path):
    _fake_runs(tmp_path)
    table = summary_table(collect([tmp_path]))
    cell = table.loc[("mnist", "mnist_m"), "source_only"]
    values = np.array([0.50, 0.54, 0.55]) * 100
    assert cell == f"{values.mean():.1f} ± {values.std(ddof=1):.1f} (3)"  # 53.0 ± 2.6 (3)
    assert cell == "53.0 ± 2.6 (3)"
    assert table.loc[("mnist", "mnist_m"), "target_oracle"] == "96.0 ± 1.4 (2)"
    assert "53.0 ± 2.6 (3)" in render(table, "markdown")
    assert "\\begin{tabular}" in render(table, "latex")


def test_table_refuses_cells_mixing_configs(tmp_path):
    _fake_runs(tmp_path)
    cfg = TrainConfig(method="source_only", source="mnist", target="mnist_m", seed=5, lr=0.5)
    d = tmp_path / "other-lr"
    d.mkdir()
    (d / "result.json").write_text(json.dumps({"config": cfg.to_dict(), "config_hash": "x",
                                               "metrics": {"target_test/acc": 0.1}, "steps": 1, "train_seconds": 1.0}))
    with pytest.raises(ValueError, match="differ in 'lr'"):
        summary_table(collect([tmp_path]))


def test_cli_table_writes_file(tmp_path, capsys):
    _fake_runs(tmp_path / "runs")
    assert main(["table", str(tmp_path / "runs"), "--out", str(tmp_path / "t.md")]) == 0
    assert "53.0 ± 2.6 (3)" in (tmp_path / "t.md").read_text()


def test_cli_table_without_runs_is_an_error(tmp_path, capsys):
    assert main(["table", str(tmp_path)]) == 2
    assert "no finished runs" in capsys.readouterr().err


def test_seed_statistics():
    mean, std, n = mean_std([1.0, 2.0, 4.0])
    assert (mean, n) == (pytest.approx(7 / 3), 3)
    assert std == pytest.approx(np.std([1.0, 2.0, 4.0], ddof=1))
    lo, hi = t_interval([1.0, 2.0, 4.0])
    assert lo == pytest.approx(7 / 3 - 4.302652729911275 * std / np.sqrt(3))
    assert hi == pytest.approx(7 / 3 + 4.302652729911275 * std / np.sqrt(3))
    with pytest.raises(ValueError):
        mean_std([])


def test_gap_closed_is_the_share_of_the_source_to_oracle_gap(tmp_path):
    _fake_runs(tmp_path)
    for seed, acc in ((0, 0.80), (1, 0.70)):
        cfg = TrainConfig(method="dann", source="mnist", target="mnist_m", seed=seed)
        d = tmp_path / f"dann-{seed}"
        d.mkdir()
        (d / "result.json").write_text(json.dumps({"config": cfg.to_dict(), "config_hash": cfg.config_hash(),
                                                   "metrics": {"target_test/acc": acc}, "steps": 1, "train_seconds": 1.0}))
    closed = gap_closed(collect([tmp_path]))
    assert list(closed.columns) == ["dann"]
    assert closed.loc[("mnist", "mnist_m"), "dann"] == pytest.approx((0.75 - 0.53) / (0.96 - 0.53))


def test_run_key_ignores_defaults_and_execution_fields():
    base = TrainConfig(method="dann", source="mnist", target="mnist_m", seed=1)
    assert base.config_hash() == TrainConfig(**{**base.to_dict(), "device": "cuda", "eval_every": 7}).config_hash()
    assert base.config_hash() != TrainConfig(**{**base.to_dict(), "seed": 2}).config_hash()
    assert "sync_batchnorm" not in base.key_dict() and base.key_dict()["method"] == "dann"


def test_collect_and_tables_from_real_runs(tmp_path, one_torch_thread):
    """The tests above read hand-written result.json files; these are written by `runs.run` (3-step runs on the toy
    domains of tests/toy.py), so a change in what a run records would show here."""
    src, tgt = write_toy_pair(tmp_path / "data", n=200)
    results = {}
    for method in ("source_only", "dann", "target_oracle"):
        for seed in (0, 1):
            cfg = TrainConfig(method=method, source=src, target=tgt, image_size=16, steps=3, batch_size=16, seed=seed,
                              optimizer="adam", lr=3e-3, device="cpu", progress=False)
            results[(method, seed)] = run(cfg, tmp_path / "runs" / f"{method}-{seed}")
    (tmp_path / "runs" / "unfinished").mkdir()  # no result.json: not a row

    frame = collect([tmp_path / "runs"])
    assert len(frame) == 6 and (frame["steps_done"] == 3).all()
    for _, row in frame.iterrows():
        result = results[(row["method"], row["seed"])]
        assert row["config_hash"] == result["config_hash"] and (row["source"], row["target"]) == (src, tgt)
        for metric, value in result["metrics"].items():  # every metric the run recorded, as recorded
            assert row[metric] == value, metric
    # the cells are mean ± std (n) of the runs' own accuracies: real configs of one method share a cell
    table = summary_table(frame)
    for method in ("source_only", "dann", "target_oracle"):
        values = 100 * np.array([results[(method, s)]["metrics"]["target_test/acc"] for s in (0, 1)])
        assert table.loc[(src, tgt), method] == f"{values.mean():.1f} ± {values.std(ddof=1):.1f} (2)"
    acc = {m: np.mean([results[(m, s)]["metrics"]["target_test/acc"] for s in (0, 1)]) for m in ("source_only", "dann",
                                                                                              "target_oracle")}
    # Adam 3e-3 moves 3 steps far enough that the methods' cells differ (measured target accuracy: source-only
    # 0.0 / 0.1, dann 0.0 / 0.1, target oracle 0.3 / 0.3; SGD's default left every run at 0.1), so a cell filled
    # from the wrong runs would show
    assert len({table.loc[(src, tgt), m] for m in ("source_only", "target_oracle")}) == 2
    expected = (acc["dann"] - acc["source_only"]) / (acc["target_oracle"] - acc["source_only"])
    assert gap_closed(frame).loc[(src, tgt), "dann"] == pytest.approx(expected)
    assert main(["table", str(tmp_path / "runs"), "--out", str(tmp_path / "t.md")]) == 0
    assert table.loc[(src, tgt), "dann"] in (tmp_path / "t.md").read_text()
