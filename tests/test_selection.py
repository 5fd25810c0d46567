"""Label-free checkpoint selection in a run (train/selection.py) and across runs (`domainadapt select`)."""

from __future__ import annotations

import pytest
import torch
from killing import run_killed_after
from toy import write_toy_pair

from domainadapt.cli import main
from domainadapt.runs import check_inputs, load_trained_model, read_result, run
from domainadapt.train import TrainConfig
from domainadapt.train.checkpoint import load_checkpoint
from domainadapt.train.logging import read_metrics
from domainadapt.train.selection import SelectionError, source_holdout

VALIDATORS = {"entropy": {}, "source_val": {}, "snd": {}}


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Tiny models: one thread each (see conftest.py)."""


def _config(tmp_path, **changes) -> TrainConfig:
    src, tgt = write_toy_pair(tmp_path)
    fields = dict(method="dann", source=src, target=tgt, image_size=16, steps=8, batch_size=16, device="cpu",
                  progress=False, log_every=2, eval_every=2, checkpoint_every=2, deterministic=True,
                  method_kwargs={"hidden": [16]}, validators=VALIDATORS)
    return TrainConfig(**{**fields, **changes})


def test_source_holdout_is_seeded_disjoint_and_complete():
    train, val = source_holdout(50, 0.2, seed=3)
    assert len(val) == 10 and len(train) == 40
    assert sorted(torch.cat([train, val]).tolist()) == list(range(50))
    again_train, again_val = source_holdout(50, 0.2, seed=3)
    assert torch.equal(val, again_val) and torch.equal(train, again_train)
    assert not torch.equal(source_holdout(50, 0.2, seed=4)[1], val)
    with pytest.raises(SelectionError, match="source_val_fraction"):
        source_holdout(3, 0.1, seed=0)  # round(0.3) = 0 validation rows


def test_a_run_records_every_validator_at_each_evaluation_and_keeps_its_best_checkpoint(tmp_path):
    config = _config(tmp_path)
    result = run(config, tmp_path / "run")
    sizes = result["sizes"]
    n = sizes["source_val"] + sizes["source_train"]  # the split's source training rows before the hold-out
    assert sizes["source_val"] == round(0.2 * n) > 0 and n == sizes["target_train"]  # 20% held out
    scored = {r["step"]: r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "validator/entropy" in r}
    assert sorted(scored) == [2, 4, 6, 8]  # every evaluation point, the final one included
    for name in VALIDATORS:
        chosen = result["selected"][name]
        best_step = max(sorted(scored), key=lambda s: scored[s][f"validator/{name}"])  # max: the first of ties
        assert chosen["step"] == best_step
        assert chosen["score"] == pytest.approx(scored[best_step][f"validator/{name}"])
        checkpoint = load_checkpoint(tmp_path / "run" / "checkpoints" / f"best-{name}.pt")
        assert checkpoint["step"] == best_step and checkpoint["selected_by"] == name
        assert all(k.startswith("model.") for k in checkpoint["modules"])  # the model alone
    model, _ = load_trained_model(tmp_path / "run" / "checkpoints" / "best-entropy.pt")  # predict/export read it
    assert model.num_classes == len(result["classes"])


def test_selection_after_a_kill_and_resume_is_the_uninterrupted_runs(tmp_path, monkeypatch):
    config = _config(tmp_path)
    reference = run(config, tmp_path / "reference")
    run_killed_after(config, tmp_path / "killed", 5, monkeypatch)  # last checkpoint: step 4
    resumed = run(config, tmp_path / "killed")
    assert resumed["selected"] == reference["selected"]
    for name in VALIDATORS:
        a = load_checkpoint(tmp_path / "killed" / "checkpoints" / f"best-{name}.pt")["modules"]
        b = load_checkpoint(tmp_path / "reference" / "checkpoints" / f"best-{name}.pt")["modules"]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_select_chooses_the_run_with_the_best_score_and_prints_it(tmp_path, capsys):
    runs = tmp_path / "runs"
    for lr in (0.01, 0.05):
        run(_config(tmp_path, lr=lr, validators={"entropy": {}}), runs / f"lr{lr}")
    scores = {d.name: read_result(d)["selected"]["entropy"]["score"] for d in runs.iterdir()}
    assert main(["select", str(runs), "--validator", "entropy"]) == 0
    out = capsys.readouterr().out
    best = max(scores, key=scores.get)
    assert f"among 2 runs: {runs / best} at step" in out and "not used to choose" in out
    assert main(["select", str(runs), "--validator", "snd"]) == 2  # the runs were not scored by it
    assert "was scored by validator 'snd'" in capsys.readouterr().err


def test_bad_validators_fail_before_any_data_is_read(tmp_path):
    with pytest.raises(ValueError, match="nope"):
        check_inputs(_config(tmp_path, validators={"nope": {}}))
    with pytest.raises(ValueError, match="source_val_fraction"):
        check_inputs(_config(tmp_path, source_val_fraction=1.5))
    text = TrainConfig(task="text_classification", validators={"source_val": {}})
    with pytest.raises(SelectionError, match="does not hold out"):
        check_inputs(text)
    with pytest.raises(SelectionError, match="trains none"):
        check_inputs(TrainConfig(task="masked_lm", validators={"entropy": {}}))


def test_validators_list_names_each_with_its_inputs(capsys):
    assert main(["validators"]) == 0
    out = capsys.readouterr().out
    assert "source_val" in out and "target_logits" in out
