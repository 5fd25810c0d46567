"""Stand-in for SIGKILL in resume tests: a run that dies right after optimizer step k (its last checkpoint is the
one before), so the test can re-run it and compare with an uninterrupted run."""

from __future__ import annotations

from pathlib import Path

import pytest

from domainadapt.runs import read_result, run
from domainadapt.train import TrainConfig
from domainadapt.train.trainer import Trainer


class Killed(Exception):
    """Raised after the chosen optimizer step, in place of the process dying."""


def run_killed_after(config: TrainConfig, run_dir: Path, step: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run `config` into `run_dir` until just after optimizer step `step`, then die; asserts no result was written."""
    original = Trainer.train_step

    def dying(self):
        original(self)
        if self.step == step:
            raise Killed

    with monkeypatch.context() as m:
        m.setattr(Trainer, "train_step", dying)
        with pytest.raises(Killed):
            run(config, run_dir)
    assert read_result(run_dir) is None
