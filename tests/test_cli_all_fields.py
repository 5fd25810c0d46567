"""Issue #16: every TrainConfig field is reachable from `domainadapt train` (dicts, lists and optional fields too),
`--strategy` applies a transfer strategy from the CLI, and metrics.jsonl logs the lr of every parameter group."""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any

import pytest
from toy import write_toy_pair

from domainadapt.cli import build_parser, main, train_config
from domainadapt.config_flags import config_flags
from domainadapt.strategies import STRATEGIES
from domainadapt.train.config import TrainConfig
from domainadapt.train.logging import read_metrics


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Tiny models: one thread each (see conftest.py)."""


def _sample(hint: Any, default: Any, choices: Any) -> tuple[Any, list[str]]:
    """A value unlike the default for a field of type `hint`, and the argv words that set it."""
    origin = typing.get_origin(hint)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if choices:
        value = next(c for c in choices if c != default)
        return value, [value]
    if hint is bool:
        return not default, []
    if hint is int or (args == [int] and origin is not dict):
        value = (default or 0) + 3
        return value, [str(value)]
    if hint is float or (args == [float] and origin is not dict):
        return 0.375, ["0.375"]
    if hint is str or args == [str] and origin is not list:
        return "abc", ["abc"]
    if origin is list:
        return ["a.*", "b.*"], ["a.*", "b.*"]
    if origin is dict:
        inner = typing.get_origin(args[1]) or args[1]
        value = {"float": 0.5, "int": 2, "dict": {"lam": 2}}.get(getattr(inner, "__name__", ""), 7)
        return {"k.*": value}, [f"k.*={json.dumps(value)}"]
    raise AssertionError(f"no sample value for the annotation {hint!r}: teach _sample this type")


def test_setting_every_field_through_argv_gives_its_value(tmp_path):
    """Iterates over the dataclass, so a new field is checked (and gets its flag) with no edit anywhere."""
    hints = typing.get_type_hints(TrainConfig)
    defaults = TrainConfig().to_dict()
    flags = {f.name: flag for f, flag, _ in config_flags()}
    assert set(flags) == {f.name for f in dataclasses.fields(TrainConfig)}
    parser = build_parser()
    for f in dataclasses.fields(TrainConfig):
        value, words = _sample(hints[f.name], defaults[f.name], f.metadata.get("choices"))
        config = train_config(parser.parse_args(["train", flags[f.name], *words, "--out", str(tmp_path)]))
        assert getattr(config, f.name) == value, (f.name, flags[f.name], words)
        others = {k: v for k, v in config.to_dict().items() if k != f.name}
        assert others == {k: v for k, v in defaults.items() if k != f.name}, f.name


def test_dict_list_optional_and_boolean_forms(tmp_path):
    parser = build_parser()
    (tmp_path / "c.json").write_text(json.dumps({"lr_mults": {"head.*": 10}, "grad_clip": 1.0, "channels_last": True,
                                                  "freeze": ["x.*"], "extra_eval": ["usps"]}))

    def config(*argv: str) -> TrainConfig:
        return train_config(parser.parse_args(["train", "--config", str(tmp_path / "c.json"), *argv,
                                               "--out", str(tmp_path / "run")]))

    c = config("--lr-mults", "backbone.*=0.1", "--lr-mults", '{"head.net.4.*": 3}', "--regularizers",
               '{"ewc": {"lam": 100}}', "--regularizers", 'l2sp={"alpha": 0.1}', "--method-arg", "trade_off=0.3",
               "--freeze", "backbone.*", "--freeze", "head.net.0.*", "head.net.2.*", "--grad-clip", "none",
               "--no-channels-last", "--init-from", "runs/source", "--task", "image_classification")
    assert c.lr_mults == {"head.*": 10, "backbone.*": 0.1, "head.net.4.*": 3}  # merged into the file's dict
    assert c.regularizers == {"ewc": {"lam": 100}, "l2sp": {"alpha": 0.1}} and c.method_kwargs == {"trade_off": 0.3}
    assert c.freeze == ["backbone.*", "head.net.0.*", "head.net.2.*"]  # replaces the file's list
    assert c.grad_clip is None and c.channels_last is False and c.init_from == "runs/source"
    assert c.extra_eval == ["usps"] and config("--extra-eval").extra_eval == []  # the flag alone clears it
    assert config().grad_clip == 1.0 and config("--channels-last").channels_last is True


@pytest.mark.parametrize("argv,message", [
    (["--lr-mults", "backbone.*"], "error: --lr-mults expects KEY=VALUE or a JSON object, got 'backbone.*'"),
    (["--regularizers", '{"ewc": '], "error: --regularizers: '{\"ewc\": ' is not a valid JSON object"),
    (["--lr-mults", "[1, 2]"], "error: --lr-mults expects KEY=VALUE or a JSON object"),
    (["--strategy", "warm_start"], "error: --strategy warm_start: unknown transfer strategy 'warm_start'; choose from "
                                   f"{list(STRATEGIES)}"),
    (["--strategy-arg", "blocks=1"], "error: --strategy-arg needs --strategy NAME"),
    (["--strategy", "full", "--strategy-arg", "depth=1"], "error: --strategy-arg: unknown option 'depth'"),
    (["--strategy", "partial"], "error: --strategy partial: strategy 'partial' transfers a trained model"),
])
def test_bad_values_end_in_one_line_and_exit_2(argv, message, tmp_path, capsys):
    assert main(["train", *argv, "--steps", "1", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()


def test_argparse_rejects_bad_numbers_with_exit_2(tmp_path, capsys):
    for argv in (["--steps", "many"], ["--grad-clip", "high"], ["--optimizer", "lion"]):
        with pytest.raises(SystemExit) as stop:
            main(["train", *argv, "--out", str(tmp_path)])
        assert stop.value.code == 2 and f"argument {argv[0]}" in capsys.readouterr().err


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return write_toy_pair(tmp_path_factory.mktemp("toy"))


def _argv(toy, out, *extra: str) -> list[str]:
    return ["train", "--source", toy[0], "--target", toy[1], "--image-size", "16", "--batch-size", "32",
            "--lr", "0.02", "--device", "cpu", "--no-progress", "--log-every", "1", *extra, "--out", str(out)]


def _logged(run_dir) -> list[dict[str, Any]]:
    return [r for r in read_metrics(run_dir / "metrics.jsonl") if "lr" in r]


def test_strategy_flag_trains_the_strategy_config(toy, tmp_path, capsys):
    assert main(_argv(toy, tmp_path / "source", "--steps", "3")) == 0
    out = tmp_path / "partial"
    assert main(_argv(toy, out, "--steps", "4", "--init-from", str(tmp_path / "source"),
                      "--strategy", "partial+gradual", "--strategy-arg", "blocks=1",
                      "--strategy-arg", "unfreeze_every=2", "--lr-mults", "backbone.*=0.1")) == 0
    saved = json.loads((out / "config.json").read_text())
    saved = saved.get("config", saved)
    assert saved["freeze"] == ["backbone.conv1.*"] and saved["unfreeze_every"] == 2
    assert saved["init_from"] == str(tmp_path / "source") and saved["lr_mults"] == {"backbone.*": 0.1}
    # gradual unfreezing: the backbone group (conv2 only: conv1 is frozen, so it is not in the name) trains from
    # step 2 on, so its lr is logged only from then (a record follows its step: record 3 is stage 1's first)
    by_step = {r["step"]: r for r in _logged(out)}
    assert [s for s, r in sorted(by_step.items()) if "lr/backbone" in r] == [3, 4]
    assert all(r["lr/head"] == r["lr"] == 0.02 for r in by_step.values())
    assert by_step[4]["lr/backbone"] == pytest.approx(0.002)


def test_every_parameter_group_lr_is_logged_by_name(toy, tmp_path):
    """lr_mults {'backbone.*': 0.1}: the backbone at lr/10, the head at lr; plain `lr` is the base lr (the head's),
    not the first group's; the cosine schedule moves all of them together."""
    assert main(_argv(toy, tmp_path / "run", "--steps", "4", "--lr-mults", "backbone.*=0.1",
                      "--schedule", "cosine")) == 0
    records = _logged(tmp_path / "run")
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    for r in records[:-1]:
        assert {k for k in r if k.startswith("lr")} == {"lr", "lr/backbone", "lr/head"}
        assert r["lr/head"] == pytest.approx(r["lr"]) and r["lr/backbone"] == pytest.approx(0.1 * r["lr"])
    assert records[0]["lr"] > records[1]["lr"] > 0
    assert records[-1]["lr"] == pytest.approx(0.0, abs=1e-12)  # cosine ends at 0: groups at lr 0 are not logged
    assert not any(k.startswith("lr/") for k in records[-1])


def test_one_group_run_logs_plain_lr_only(toy, tmp_path):
    assert main(_argv(toy, tmp_path / "run", "--steps", "2")) == 0
    assert [{k: v for k, v in r.items() if k.startswith("lr")} for r in _logged(tmp_path / "run")] == [{"lr": 0.02}] * 2
