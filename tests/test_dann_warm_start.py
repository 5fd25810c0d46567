"""DANN's adversary warm start (methods/grl.py::AdversaryWarmStart): the collapse it cures, in miniature, and
the gate's own contract (closed until the source loss falls, the ramp re-measured from the opening, exact
resume through its buffers)."""

from __future__ import annotations

import math

import pytest
import torch
from toy import write_toy_pair

from domainadapt.methods import MethodContext, build_method, grl_coefficient
from domainadapt.methods.grl import AdversaryWarmStart
from domainadapt.runs import run
from domainadapt.train import TrainConfig


def test_short_run_collapse_in_miniature_and_the_warm_start_cures_it(tmp_path, one_torch_thread):
    """The syndigits → mnist mechanism on the toy pair: the class signal is weak (a 40-grey-level block, so the
    source classifier needs ~100 Adam steps to leave chance) and the domains are trivially separable (the target
    is inverted). With the paper's schedule (λ_p from step 0) the reversed domain gradient wins first and the
    source task never starts; with the warm start DANN learns the source as well as source-only does.
    Measured (300 steps, seed 0): source_only 90.0% source accuracy, paper schedule 15.0% (train/cls 2.30 =
    ln 10 at the end), warm start 90.0% (train/cls 0.54)."""
    source, target = write_toy_pair(tmp_path, contrast=40.0)
    recipe = dict(source=source, target=target, image_size=16, steps=300, batch_size=32, optimizer="adam",
                  lr=1e-3, schedule="dann", device="cpu", progress=False, log_every=50, on_unhealthy="off")
    paper = run(TrainConfig(method="dann", method_kwargs={"start_below": 1.0}, **recipe), tmp_path / "paper")
    warm = run(TrainConfig(method="dann", **recipe), tmp_path / "warm")
    assert paper["metrics"]["source_test/acc"] <= 0.3  # at chance (10%) give or take a class
    assert paper["metrics"]["train/cls"] > 0.9 * math.log(10)
    assert warm["metrics"]["source_test/acc"] >= 0.75
    assert warm["metrics"]["train/cls"] < 0.5 * math.log(10)


def test_gate_is_closed_until_the_average_source_loss_falls_below_the_threshold():
    gate = AdversaryWarmStart(num_classes=10, start_below=0.5, smoothing=0.0)  # no smoothing: the loss itself
    threshold = 0.5 * math.log(10)
    assert gate(torch.tensor(2.3), progress=0.1).item() == 0.0
    assert gate(torch.tensor(threshold + 0.01), progress=0.2).item() == 0.0
    assert gate.opened_at.item() == -1.0
    assert gate(torch.tensor(threshold - 0.01), progress=0.2).item() == 0.0  # opens now: p' = 0, λ = 0
    assert gate.opened_at.item() == pytest.approx(0.2)
    # the ramp is λ_p of the progress re-measured from the opening: p' = (0.6 − 0.2) / 0.8 = 0.5
    assert gate(torch.tensor(5.0), progress=0.6).item() == pytest.approx(grl_coefficient(0.5), rel=1e-6)
    assert gate.opened_at.item() == pytest.approx(0.2)  # a later rise of the loss does not close it
    assert gate(torch.tensor(5.0), progress=1.0, max_coeff=0.3).item() == pytest.approx(grl_coefficient(1.0, 10, 0.3),
                                                                                        rel=1e-6)


def test_gate_averages_the_loss_and_start_below_one_is_the_paper_schedule():
    gate = AdversaryWarmStart(num_classes=10, start_below=0.5, smoothing=0.5)
    gate(torch.tensor(2.0), 0.0)
    gate(torch.tensor(0.0), 0.1)  # the average is 1.0 (0.5·2 + 0.5·0), below 0.5·ln 10 = 1.151: it opens
    assert gate.loss_average.item() == pytest.approx(1.0)
    assert gate.opened_at.item() == pytest.approx(0.1)
    paper = AdversaryWarmStart(num_classes=10, start_below=1.0)
    for p in (0.0, 0.1, 0.5, 1.0):
        assert paper(torch.tensor(2.3), p).item() == pytest.approx(grl_coefficient(p), abs=1e-7)
    with pytest.raises(ValueError, match="start_below"):
        AdversaryWarmStart(10, start_below=0.0)
    with pytest.raises(ValueError, match="smoothing"):
        AdversaryWarmStart(10, smoothing=1.0)


def test_gate_state_is_in_the_methods_state_dict_and_frozen_in_eval_mode():
    method = build_method("dann", MethodContext(4, 10, 100), hidden=(8,))
    state = method.state_dict()
    assert {"warm_start.loss_average", "warm_start.opened_at"} <= set(state)
    method.warm_start(torch.tensor(0.1), 0.3)
    assert method.warm_start.opened_at.item() == pytest.approx(0.3)
    fresh = build_method("dann", MethodContext(4, 10, 100), hidden=(8,))
    fresh.load_state_dict(method.state_dict())  # resume: the gate stays open where it opened
    assert fresh.warm_start.opened_at.item() == pytest.approx(0.3)
    fresh.eval()
    fresh.warm_start(torch.tensor(9.0), 0.5)
    assert fresh.warm_start.loss_average.item() == pytest.approx(0.1)  # evaluation does not move the gate
    assert all(torch.isfinite(t).all() for t in state.values())  # the trainer's finite check covers buffers


def test_the_behaviour_change_changes_the_run_key():
    # a results folder of the old DANN (paper schedule by default) must not be read as the new one
    dann, source_only = TrainConfig(method="dann"), TrainConfig(method="source_only")
    assert dann.key_dict()["method_revision"] == 1
    assert "method_revision" not in source_only.key_dict()  # revision 0: every other run keeps its name
    assert TrainConfig(method="dann", method_kwargs={"start_below": 1.0}).config_hash() != dann.config_hash()


def test_gate_folds_one_mean_per_optimizer_step_under_gradient_accumulation():
    # two forwards of one optimizer step (grad_accum=2) count as one observation, their mean: the gate sees what a
    # run without accumulation sees on the whole batch (a 2-process run matches too: tests/test_trainer_claims.py)
    gate = AdversaryWarmStart(num_classes=10, start_below=0.5, smoothing=0.0, micro_steps=2)
    gate(torch.tensor(0.2), 0.1)
    assert gate.loss_average.item() == -1.0  # the step is not complete yet
    gate(torch.tensor(3.0), 0.1)  # mean 1.6 > 1.151: stays closed
    assert gate.loss_average.item() == pytest.approx(1.6) and gate.opened_at.item() == -1.0
    gate(torch.tensor(0.3), 0.2)
    gate(torch.tensor(0.5), 0.2)  # mean 0.4: opens at this step
    assert gate.loss_average.item() == pytest.approx(0.4) and gate.opened_at.item() == pytest.approx(0.2)
    with pytest.raises(ValueError, match="micro_steps"):
        AdversaryWarmStart(10, micro_steps=0)
