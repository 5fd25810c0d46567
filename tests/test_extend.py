"""The README's "Extend it" examples, run as written: a method, a task, a regularizer, a validator and a backbone, each one
file outside the package (a plug-in), registered and trained for 5 steps through the CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from domainadapt.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_examples() -> dict[str, str]:
    """{file name: code} of every `<!-- example: NAME -->` block of the README."""
    text = README.read_text()
    return dict(re.findall(r"<!-- example: (\S+) -->\n```python\n(.*?)```", text, flags=re.S))


@pytest.fixture()
def plugin_files(tmp_path, monkeypatch):
    monkeypatch.delenv("DOMAINADAPT_PLUGINS", raising=False)
    files = []
    for name, code in readme_examples().items():
        path = tmp_path / "plugins" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(code)
        files.append(path)
    return files


def test_the_readme_shows_one_file_each_for_method_task_regularizer_and_backbone():
    assert sorted(readme_examples()) == ["alternate.py", "entmin.py", "l1_head.py", "max_prob.py", "tiny_cnn.py",
                                         "toy_shift.py"]


def test_the_readme_method_with_phases_trains_and_resumes_exactly(plugin_files, tmp_path, monkeypatch,
                                                                   one_torch_thread):
    """Written from the README alone: two update phases and a refresh every 2 steps (steps 0, 2, 4), killed after
    step 3 (last checkpoint: step 2, between two refreshes) and resumed; it ends bitwise equal to a run never
    stopped, and each phase trained only its own part."""
    import torch

    from domainadapt.plugins import load_plugin
    from domainadapt.runs import run
    from domainadapt.train import TrainConfig, load_checkpoint

    from killing import run_killed_after

    for f in plugin_files:
        load_plugin(str(f))
    config = TrainConfig(task="toy_shift", method="alternate", backbone="tiny_cnn", image_size=8, steps=5,
                         batch_size=16, lr=0.05, device="cpu", progress=False, log_every=1, checkpoint_every=2,
                         deterministic=True, task_kwargs={"n": 32}, on_unhealthy="off")
    run_killed_after(config, tmp_path / "killed", 3, monkeypatch)
    resumed = run(config, tmp_path / "killed")
    reference = run(config, tmp_path / "reference")
    a = load_checkpoint(tmp_path / "killed" / "checkpoints" / "last.pt")["modules"]
    b = load_checkpoint(tmp_path / "reference" / "checkpoints" / "last.pt")["modules"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in b)
    assert resumed["metrics"] == reference["metrics"]
    metrics = reference["metrics"]
    assert {"train/head/cls", "train/features/cls", "train/features/ent"} <= set(metrics)
    assert not torch.equal(b["method.prior"], torch.full((2,), 0.5))  # refreshed from the target set


def test_readme_plugins_train_five_steps_through_the_cli(plugin_files, tmp_path, capsys, one_torch_thread):
    plugins = [arg for f in plugin_files for arg in ("--plugin", str(f))]
    out = tmp_path / "run"
    code = main([*plugins, "train", "--task", "toy_shift", "--method", "entmin", "--backbone", "tiny_cnn",
                 "--image-size", "8", "--regularizers", json.dumps({"l1_head": {"strength": 0.001}}),
                 "--task-arg", "n=32", "--method-arg", "weight=0.3", "--validators", "max_prob={}", "--eval-every",
                 "2", "--steps", "5", "--batch-size", "16",
                 "--log-every", "1", "--no-progress", "--device", "cpu", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    result = json.loads((out / "result.json").read_text())
    assert result["steps"] == 5
    metrics = result["metrics"]
    assert metrics["train/ent"] > 0 and metrics["train/l1_head"] > 0 and metrics["train/cls"] > 0
    assert 0.0 <= metrics["target_test/acc"] <= 1.0
    assert result["config"]["task_kwargs"] == {"n": 32} and result["config"]["method_kwargs"] == {"weight": 0.3}
    assert result["selected"]["max_prob"]["step"] in (2, 4, 5)  # scored at each evaluation and the final step
    assert (out / "checkpoints" / "best-max_prob.pt").is_file()
    from domainadapt.runs import load_trained_model  # the task rebuilds the model of the finished run

    model, config = load_trained_model(out)
    assert config.backbone == "tiny_cnn" and model.num_classes == 2 and model.backbone.out_features == 8

    for listing, name in (("tasks", "toy_shift"), ("methods", "entmin"), ("regularizers", "l1_head"),
                          ("backbones", "tiny_cnn"), ("validators", "max_prob")):
        capsys.readouterr()
        assert main([*plugins, listing]) == 0
        assert name in capsys.readouterr().out


def test_plugin_options_are_checked_before_any_work(plugin_files, tmp_path, capsys):
    plugins = [arg for f in plugin_files for arg in ("--plugin", str(f))]
    base = [*plugins, "train", "--task", "toy_shift", "--backbone", "tiny_cnn", "--image-size", "8", "--steps", "1",
            "--no-progress", "--device", "cpu", "--out", str(tmp_path / "bad")]
    assert main([*base, "--task-arg", "nn=3"]) == 2
    assert "task 'toy_shift' does not take task_kwargs ['nn']" in capsys.readouterr().err
    assert main([*base, "--backbone-arg", "width=3"]) == 2
    assert "backbone 'tiny_cnn' does not take option(s) ['width']" in capsys.readouterr().err
    assert main([*base, "--regularizers", '{"l1_head": {"strength": "big"}}']) == 2
    assert "regularizer 'l1_head': strength must be a number" in capsys.readouterr().err
    assert main(["--plugin", str(tmp_path / "missing.py"), "tasks"]) == 2
    assert "plug-in file" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()  # nothing was written
