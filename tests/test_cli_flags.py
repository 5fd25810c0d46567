"""The CLI's train flags are made from TrainConfig: every field has one, with its doc and the config's choices."""

from __future__ import annotations

import dataclasses

import pytest

from domainadapt.cli import build_parser, main, train_config
from domainadapt.config_flags import config_flags
from domainadapt.train.config import AMP_MODES, OPTIMIZERS, TrainConfig


def train_parser():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return sub.choices["train"]


def test_every_config_field_has_a_flag_with_its_doc():
    actions = {a.dest: a for a in train_parser()._actions}
    for f in dataclasses.fields(TrainConfig):
        assert f.name in actions, f.name
        assert f.metadata["doc"] and f.metadata["doc"].split(" (")[0] in actions[f.name].help
    assert actions["amp"].choices == list(AMP_MODES) and actions["optimizer"].choices == list(OPTIMIZERS)
    flags = {f.name: flag for f, flag, _ in config_flags()}
    assert flags["method_kwargs"] == "--method-arg" and flags["progress"] == "--no-progress"
    assert flags["channels_last"] == "--channels-last" and flags["sync_batchnorm"] == "--no-sync-batchnorm"


def test_run_key_exclusions_are_declared_on_the_fields():
    assert TrainConfig.execution_fields() == {"device", "progress", "checkpoint_every", "eval_every", "log_every",
                                              "eval_batch_size", "num_workers", "on_unhealthy", "health_kwargs"}
    base = TrainConfig()
    assert dataclasses.replace(base, device="cpu", eval_every=7).config_hash() == base.config_hash()
    assert dataclasses.replace(base, steps=7).config_hash() != base.config_hash()


def test_flags_parse_into_config_fields(tmp_path, capsys):
    parser = build_parser()
    args = parser.parse_args(["train", "--freeze", "backbone.*", "head.net.0.*", "--lr-mults", '{"head.*": 10}',
                              "--target-per-class", "3", "--grad-clip", "1.5", "--out", str(tmp_path)])
    config = train_config(args)
    assert config.freeze == ["backbone.*", "head.net.0.*"] and config.lr_mults == {"head.*": 10}
    assert config.target_per_class == 3 and config.grad_clip == 1.5
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--amp", "fp8", "--out", str(tmp_path)])
    assert main(["train", "--task", "speech", "--out", str(tmp_path / "x")]) == 2
    assert "unknown task 'speech'" in capsys.readouterr().err
