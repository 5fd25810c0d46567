"""Training health monitor (domainadapt/train/health.py): named warnings from the flushed training losses and the
target predicted-class histogram, never from target labels; on_unhealthy warn / stop / off; result.json "health";
the table's mark. Runs are 60-80 steps on the toy domains of tests/toy.py (~2 s each)."""

from __future__ import annotations

import inspect
import json
import math
import re
from pathlib import Path

import pytest
import torch

from domainadapt.cli import main
from domainadapt.data.domain import DigitDomain
from domainadapt.methods import MethodContext, build_method
from domainadapt.models import build_model
from domainadapt.report import collect, render, summary_table
from domainadapt.runs import read_result, run
from domainadapt.seeding import seed_everything
from domainadapt.train import ConfigError, HealthMonitor, HealthOptions, TrainConfig, UnhealthyRunError, load_checkpoint
from domainadapt.train.health import HEALTH_CODES, entropy, method_domain_weight
from domainadapt.train.logging import read_metrics
from domainadapt.train.trainer import Trainer

from gloo import run_configs_on_two_ranks
from toy import toy_domain, write_toy_pair

LN10 = math.log(10)
CRUSHED = dict(weight_decay=10.0)  # lr·wd = 0.5 per step: every weight shrinks toward 0, logits → 0, cls → ln 10


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> tuple[str, str]:
    return write_toy_pair(tmp_path_factory.mktemp("toy"))


@pytest.fixture(autouse=True)
def _threads_and_determinism():
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)


def _config(toy, **overrides) -> TrainConfig:
    source, target = toy
    base = dict(source=source, target=target, image_size=16, steps=80, batch_size=32, lr=0.05, device="cpu",
                progress=False, log_every=10)
    base.update(overrides)
    return TrainConfig(**base)


def _health(run_dir: Path) -> list[dict]:
    return [r for r in read_metrics(run_dir / "metrics.jsonl") if r.get("event") in ("health", "health_cleared")]


def _first_judged_step(config: TrainConfig, options: HealthOptions = HealthOptions()) -> int:
    """The first log step the learning gate lets through: progress >= min_progress and step >= min_steps."""
    start = max(math.ceil(options.min_progress * config.steps), options.min_steps)
    return min(config.steps, math.ceil(start / config.log_every) * config.log_every)


# ------------------------------------------------------------------------------------------------ (a) collapse


@pytest.mark.parametrize("method, expected", [
    ("source_only", ["source_at_chance"]),
    ("dann", ["source_at_chance", "discriminator_pinned"]),
])
def test_a_collapsed_run_warns_at_the_first_judged_step(toy, tmp_path, method, expected):
    config = _config(toy, method=method, **CRUSHED)
    result = run(config, tmp_path / "run")
    assert result["metrics"]["source_test/acc"] == pytest.approx(0.1)  # collapsed: chance on 10 balanced classes
    assert abs(result["metrics"]["train/cls"] - LN10) < 0.01
    step = _first_judged_step(config)
    assert step == 50  # min_steps (50) comes after 25% of 80 steps (20)
    assert result["health"] == expected
    records = _health(tmp_path / "run")
    assert [r["code"] for r in records] == expected  # each fires once and stays (the model stays collapsed)
    assert all(r["step"] == step and r["event"] == "health" and r["message"] for r in records)
    if method == "dann":  # features at 0: the discriminator's loss sits at ln 2, the "aligned" value, trivially
        assert abs(result["metrics"]["train/domain"] - math.log(2)) < 0.01 * math.log(2)
    # the record sits right after the step's loss record
    lines = read_metrics(tmp_path / "run" / "metrics.jsonl")
    i = next(k for k, r in enumerate(lines) if r.get("event") == "health")
    assert lines[i - 1]["step"] == step and "train/total" in lines[i - 1]


def test_a_learning_rate_far_too_high_records_loss_spike_then_stops_non_finite(toy, tmp_path):
    with pytest.raises(FloatingPointError, match="non-finite training loss at step") as err:
        run(_config(toy, lr=0.5), tmp_path / "run")
    step = int(re.search(r"at step (\d+)", str(err.value)).group(1))
    lines = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert lines[-1] == {"step": step, "event": "health", "code": "loss_spike",
                         "message": "train/total is nan (non-finite)"}
    assert read_result(tmp_path / "run") is None


# ------------------------------------------------------------------------------------------------ (b) healthy


@pytest.mark.parametrize("method", ["source_only", "target_oracle"])  # the oracle forwards target batches
def test_b_a_healthy_short_run_warns_nothing(toy, tmp_path, method):
    config = _config(toy, method=method, steps=60)
    assert _first_judged_step(config) <= 50  # the gate is passed: checks at steps 50 and 60 judge learning
    result = run(config, tmp_path / "run")
    assert result["metrics"]["source_test/acc" if method == "source_only" else "target_test/acc"] > 0.9
    assert result["health"] == []
    assert _health(tmp_path / "run") == []


# ------------------------------------------------------------------------------------------------ (c) stop / off


def test_c_stop_ends_the_run_with_a_named_error_and_writes_no_result(toy, tmp_path, capsys):
    config = _config(toy, on_unhealthy="stop", checkpoint_every=20, **CRUSHED)
    with pytest.raises(UnhealthyRunError, match=r"unhealthy run at step 50: source_at_chance: ") as err:
        run(config, tmp_path / "run")
    assert isinstance(err.value, RuntimeError) and "step 40) is kept" in str(err.value)
    assert read_result(tmp_path / "run") is None
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 40  # the last one, kept
    lines = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert lines[-1]["event"] == "health" and lines[-1]["code"] == "source_at_chance" and lines[-1]["step"] == 50
    assert max(r["step"] for r in lines) == 50  # nothing trained past it

    # the CLI: one error line, exit 2
    source, target = toy
    argv = ["train", "--source", source, "--target", target, "--image-size", "16", "--steps", "80", "--batch-size",
            "32", "--lr", "0.05", "--weight-decay", "10", "--device", "cpu", "--no-progress", "--log-every", "10",
            "--on-unhealthy", "stop", "--out", str(tmp_path / "cli")]
    capsys.readouterr()
    assert main(argv) == 2
    err_lines = capsys.readouterr().err.strip().splitlines()
    assert len(err_lines) == 1 and err_lines[0].startswith("error: unhealthy run at step 50: source_at_chance")
    assert not (tmp_path / "cli" / "result.json").exists()

    # on_unhealthy is not in the run key: the same directory continues under "warn" from the step-40 checkpoint
    # and records what an uninterrupted "warn" run records
    result = run(_config(toy, checkpoint_every=20, **CRUSHED), tmp_path / "run")
    assert result["health"] == ["source_at_chance"] and result["config_hash"] == config.config_hash()
    reference = run(_config(toy, checkpoint_every=20, **CRUSHED), tmp_path / "reference")
    assert result["metrics"] == reference["metrics"]
    assert _health(tmp_path / "run") == _health(tmp_path / "reference")


def test_c_off_records_nothing_and_every_mode_trains_the_same_bits(toy, tmp_path):
    """The monitor only reads: warn and off train bitwise the same weights (DANN: method modules, target batches
    observed every step), with the same losses and the same log but for the health records."""
    results = {}
    for mode in ("warn", "off"):
        results[mode] = run(_config(toy, method="dann", deterministic=True, on_unhealthy=mode, **CRUSHED),
                            tmp_path / mode)
    assert results["warn"]["health"] == ["source_at_chance", "discriminator_pinned"]
    assert results["off"]["health"] is None and _health(tmp_path / "off") == []
    assert results["warn"]["metrics"] == results["off"]["metrics"]
    a = load_checkpoint(tmp_path / "warn" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "off" / "checkpoints" / "last.pt")
    assert a["modules"].keys() == b["modules"].keys()
    for k in a["modules"]:
        assert torch.equal(a["modules"][k], b["modules"][k]), k
    assert b["health"] is None and a["health"]["codes"] == results["warn"]["health"]
    def strip(d):
        return [r for r in read_metrics(d / "metrics.jsonl") if not r.get("event", "").startswith("health")]

    assert strip(tmp_path / "warn") == strip(tmp_path / "off")


def test_c_a_resumed_run_writes_the_records_of_an_uninterrupted_one(toy, tmp_path, monkeypatch):
    """The monitor's state is in the checkpoint: killed at step 65 (checkpoint 60, after the step-50 warnings), the
    resumed run does not fire again, and its log equals the uninterrupted run's."""
    config = _config(toy, method="dann", checkpoint_every=20, **CRUSHED)
    original = Trainer.train_step

    class Killed(Exception):
        pass

    def dying(self):
        original(self)
        if self.step == 65:
            raise Killed

    with monkeypatch.context() as m:
        m.setattr(Trainer, "train_step", dying)
        with pytest.raises(Killed):
            run(config, tmp_path / "killed")
    assert load_checkpoint(tmp_path / "killed" / "checkpoints" / "last.pt")["health"]["active"]
    resumed = run(config, tmp_path / "killed")
    reference = run(config, tmp_path / "reference")
    assert resumed["health"] == reference["health"] == ["source_at_chance", "discriminator_pinned"]
    log = [r for r in read_metrics(tmp_path / "killed" / "metrics.jsonl") if r.get("event") != "resumed"]
    assert log == read_metrics(tmp_path / "reference" / "metrics.jsonl")
    assert [r["step"] for r in _health(tmp_path / "killed")] == [50, 50]


# ------------------------------------------------------------------------------------------------ (d) target collapse


def _logits_for(classes: list[int], num_classes: int = 10) -> torch.Tensor:
    """A batch whose argmax is `classes`, row by row."""
    logits = torch.randn(len(classes), num_classes, generator=torch.Generator().manual_seed(0))
    logits[torch.arange(len(classes)), torch.tensor(classes)] = 10.0
    return logits


JUDGED = dict(step=100, progress=1.0, losses={"train/cls": 0.1, "train/total": 0.1})


def _collapse_events(classes_per_batch: list[list[int]]) -> list:
    monitor = HealthMonitor(10)
    for classes in classes_per_batch:
        monitor.observe_target_logits(_logits_for(classes))
    return monitor.check(target_counts=monitor.take_target_counts(), **JUDGED)


def test_d_target_collapse_fires_for_one_class_and_not_for_balanced_predictions():
    events = _collapse_events([[3] * 32, [3] * 32])
    assert [(e.code, e.fired) for e in events] == [("target_collapse", True)]
    assert "100% class 3" in events[0].message and "64 predictions" in events[0].message
    assert _collapse_events([list(range(10)) * 3, list(range(10)) * 3]) == []  # uniform: entropy ln 10
    # the threshold is half of ln 10 = 1.15 nats: two equal classes (ln 2 = 0.69) collapse, four (ln 4 = 1.39) do not
    assert [e.code for e in _collapse_events([[0, 1] * 30])] == ["target_collapse"]
    assert _collapse_events([[0, 1, 2, 3] * 15]) == []
    assert _collapse_events([[3] * 40]) == []  # 40 < 5·10 predictions: too few to judge
    assert entropy([5, 5, 0, 0]) == pytest.approx(math.log(2))


def test_d_target_collapse_waits_for_the_gate_and_clears():
    monitor = HealthMonitor(10)
    one_class = torch.tensor([64] + [0] * 9)
    assert monitor.check(49, 1.0, {"train/total": 1.0}, one_class) == []  # before min_steps: untrained nets do this
    assert monitor.check(100, 0.2, {"train/total": 1.0}, one_class) == []  # before min_progress
    assert [e.code for e in monitor.check(100, 0.3, {"train/total": 1.0}, one_class)] == ["target_collapse"]
    assert monitor.check(110, 0.3, {"train/total": 1.0}, one_class) == []  # still holding: no second record
    cleared = monitor.check(120, 0.4, {"train/total": 1.0}, torch.full((10,), 7))
    assert [(e.code, e.fired) for e in cleared] == [("target_collapse", False)]
    assert cleared[0].record()["event"] == "health_cleared" and monitor.codes == ["target_collapse"]


# ------------------------------------------------------------------------------------------------ (e) no labels


def _dann_trainer(tmp_path: Path, target: DigitDomain) -> Trainer:
    config = TrainConfig(method="dann", method_kwargs={"max_coeff": 0.0}, image_size=16, steps=80, batch_size=32,
                         lr=0.05, device="cpu", progress=False, log_every=10)
    seed_everything(0)
    model = build_model("digits_cnn", 10, 16)
    method = build_method("dann", MethodContext(model.feature_dim, 10, config.steps), max_coeff=0.0)
    return Trainer(config, model, method, source_train=toy_domain(320, seed=0), target_train=target,
                   eval_sets={}, run_dir=tmp_path)


def test_e_the_monitor_never_sees_target_labels(tmp_path):
    """DANN without reversal (max_coeff 0: the discriminator never pushes back) on the inverted toy target: its target
    predictions pile onto a few classes, so target_collapse fires. With the target's real labels or with every
    label replaced by class 0, the health output is the same, record for record: the labels never reach it."""
    real = toy_domain(320, seed=1, invert=True)
    constant = DigitDomain("toy_target", real.images, torch.zeros_like(real.labels), real.classes)
    out = {}
    for name, target in (("real", real), ("constant", constant)):
        trainer = _dann_trainer(tmp_path / name, target)
        metrics = trainer.fit()
        out[name] = (trainer.health_codes, _health(tmp_path / name), metrics)
    assert "target_collapse" in out["real"][0]
    assert out["real"] == out["constant"]
    # and the API has no place for labels: losses, progress, step and predicted-class counts only
    for fn in (HealthMonitor.check, HealthMonitor.observe_target_logits, HealthMonitor.__init__):
        params = set(inspect.signature(fn).parameters) - {"self"}
        assert not any("label" in p or p.startswith("y") for p in params), (fn, params)


# ------------------------------------------------------------------------------------------------ the other checks


def test_discriminator_near_ln2_is_the_dann_goal_unless_the_source_is_at_chance():
    aligned = HealthMonitor(10)
    for step in range(10, 200, 10):  # DANN's goal: domain loss at ln 2, source classifier learning
        assert aligned.check(step, step / 200, {"train/cls": 0.3, "train/domain": math.log(2) + 1e-4 * step,
                                                "train/total": 1.0}) == []
    collapsed = HealthMonitor(10)
    fired = {}
    for step in range(10, 200, 10):
        for e in collapsed.check(step, step / 200, {"train/cls": LN10, "train/domain": 0.6932 + 1e-5 * step,
                                                    "train/total": 3.0}):
            fired.setdefault(e.code, step)
    assert fired == {"source_at_chance": 50, "discriminator_pinned": 50}  # the gate: 25% of 200 steps and 50 steps
    frozen = HealthMonitor(10)  # exactly the same mean at 3 checks: fires at once, gate or not
    codes = [[e.code for e in frozen.check(s, s / 1000, {"train/cls": 1.0, "train/domain": 0.5, "train/total": 1.5})]
             for s in (10, 20, 30)]
    assert codes == [[], [], ["discriminator_pinned"]]


def test_discriminator_won_needs_patience_and_the_gate_and_the_method_weight():
    monitor = HealthMonitor(10)
    firsts = {}
    for step, domain in zip(range(10, 110, 10), [0.6, 0.011, 0.012, 0.013, 0.6, 0.014, 0.02, 0.015, 0.03, 0.016]):
        for e in monitor.check(step, step / 100, {"train/cls": 0.2, "train/domain": domain, "train/total": 1.0}):
            firsts.setdefault((e.code, e.fired), step)
    # 3 low checks at 20-40 but before the gate (step 50); then 60, 70, 80 are three in a row
    assert firsts == {("discriminator_won", True): 80}
    # a dann with weight 0.1 reports 0.1 × BCE: 0.004 is a BCE of 0.04 (won), 0.06 one of 0.6 (not)
    dann = build_method("dann", MethodContext(16, 10, 100), hidden=(8,), weight=0.1)
    assert method_domain_weight(dann) == 0.1
    assert method_domain_weight(build_method("coral", MethodContext(16, 10, 1))) == 1
    for domain, expected in ((0.004, ["discriminator_won"]), (0.06, [])):
        m = HealthMonitor(10, domain_weight=method_domain_weight(dann))
        got = [e.code for s in (60, 70, 80)  # (values that differ a little: an exactly repeated mean is "pinned")
               for e in m.check(s, 0.9, {"train/cls": 0.2, "train/domain": domain + s * 1e-6, "train/total": 1.0})]
        assert got == expected


def test_loss_spike_against_the_running_median_and_clears():
    def events(totals):
        monitor = HealthMonitor(10)
        return [(s, e.code, e.fired) for s, t in zip(range(10, 10 * len(totals) + 1, 10), totals)
                for e in monitor.check(s, 0.0, {"train/total": t})]

    # the median of the previous checks (2.3, 1.5, 1.0, 0.9) is 1.25: 3.5 is below 3 × 1.25, 4.0 above
    assert events([2.3, 1.5, 1.0, 0.9, 3.5, 0.8]) == []
    assert events([2.3, 1.5, 1.0, 0.9, 4.0, 0.8]) == [(50, "loss_spike", True), (60, "loss_spike", False)]
    assert events([9.0, 9.0, 40.0]) == []  # fewer than 3 previous checks: no median yet
    assert events([0.01, 0.01, 0.01, 0.04]) == []  # 4× the median but only 0.03 above it: noise near zero
    assert events([1.0, float("nan")]) == [(20, "loss_spike", True)]  # non-finite: at once


def test_monitor_state_round_trips():
    a = HealthMonitor(10)
    for s in (10, 20, 30, 40, 50):
        a.check(s, s / 100, {"train/cls": LN10, "train/domain": 0.6931 + s * 1e-6, "train/total": 3.0})
    a.observe_target_logits(_logits_for([1] * 8))
    b = HealthMonitor(10)
    b.load_state_dict(a.state_dict())
    assert b.state_dict()["codes"] == a.codes == ["source_at_chance", "discriminator_pinned"]
    assert torch.equal(b.take_target_counts(), a.take_target_counts())
    later = {"train/cls": 0.1, "train/domain": 0.6931, "train/total": 0.5}
    assert [(e.code, e.fired) for e in a.check(60, 0.6, later)] == [(e.code, e.fired) for e in b.check(60, 0.6, later)]


def test_options_are_typed_and_out_of_the_run_key():
    base = TrainConfig()
    for change in (dict(on_unhealthy="stop"), dict(on_unhealthy="off"), dict(health_kwargs={"min_steps": 100})):
        assert TrainConfig(**change).config_hash() == base.config_hash()
    with pytest.raises(ConfigError, match="on_unhealthy must be one of"):
        TrainConfig(on_unhealthy="explode").validate()
    with pytest.raises(ConfigError, match=r"does not take .*\['min_stepz'\]"):
        TrainConfig(health_kwargs={"min_stepz": 1}).validate()
    with pytest.raises(ConfigError, match="min_progress must be in"):
        TrainConfig(health_kwargs={"min_progress": 2.0}).validate()
    with pytest.raises(ConfigError, match="patience"):
        TrainConfig(health_kwargs={"patience": "3"}).validate()
    assert set(HEALTH_CODES) == {"source_at_chance", "discriminator_won", "discriminator_pinned", "target_collapse",
                                 "loss_spike"}


def test_health_kwargs_change_the_gate(toy, tmp_path):
    config = _config(toy, health_kwargs={"min_steps": 0}, **CRUSHED)
    result = run(config, tmp_path / "run")
    assert _first_judged_step(config, HealthOptions(min_steps=0)) == 20  # now 25% of 80 steps
    assert [(r["code"], r["step"]) for r in _health(tmp_path / "run")] == [("source_at_chance", 20)]
    assert result["health"] == ["source_at_chance"]


def test_the_progress_bar_shows_what_holds(toy, tmp_path, capsys):
    capsys.readouterr()
    run(_config(toy, progress=True, **CRUSHED), tmp_path / "run")
    bar = capsys.readouterr().err
    assert "health=source_at_chance" in bar and "loss=2.30" in bar


# ------------------------------------------------------------------------------------------------ the table


def _result(root: Path, name: str, seed: int, acc: float, health: list[str] | None, method: str = "dann") -> None:
    cfg = TrainConfig(method=method, source="mnist", target="mnist_m", seed=seed)
    d = root / name
    d.mkdir(parents=True)
    result = {"config": cfg.to_dict(), "config_hash": cfg.config_hash(), "metrics": {"target_test/acc": acc},
              "steps": 1, "train_seconds": 1.0}
    if health is not None:  # older result files have no "health"
        result["health"] = health
    (d / "result.json").write_text(json.dumps(result))


def test_table_marks_cells_whose_runs_warned(tmp_path):
    _result(tmp_path, "dann-0", 0, 0.70, ["discriminator_won", "target_collapse"])
    _result(tmp_path, "dann-1", 1, 0.80, [])
    _result(tmp_path, "so-0", 0, 0.50, [], method="source_only")
    _result(tmp_path, "so-1", 1, 0.54, None, method="source_only")
    frame = collect([tmp_path])
    assert dict(zip(frame["run_dir"].map(lambda p: Path(p).name), frame["health"])) == {
        "dann-0": "discriminator_won,target_collapse", "dann-1": "", "so-0": "", "so-1": ""}
    table = summary_table(frame)  # runs differing in health still share their cell
    assert table.loc[("mnist", "mnist_m"), "dann"] == "75.0 ± 7.1 (2) ⚠"
    assert table.loc[("mnist", "mnist_m"), "source_only"] == "52.0 ± 2.8 (2)"
    assert "75.0 ± 7.1 (2) ⚠" in render(table, "markdown")
    latex = render(table, "latex")
    assert r"75.0 ± 7.1 (2) $\dagger$" in latex and "⚠" not in latex  # pdflatex has no ⚠ glyph


# ------------------------------------------------------------------------------------------------ DDP



def test_two_processes_judge_alike_and_stop_together(toy, tmp_path):
    """Under DDP the monitor sees rank-averaged losses and the all-reduced target histogram, so both ranks judge
    alike: the records equal a 1-process run's (codes and steps), and "stop" ends both ranks at the same step."""
    jobs = [["warn", _config(toy, method="dann", **CRUSHED).to_dict()],
            ["stop", _config(toy, method="dann", on_unhealthy="stop", **CRUSHED).to_dict()]]
    proc = run_configs_on_two_ranks(jobs, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    single = run(_config(toy, method="dann", **CRUSHED), tmp_path / "single")
    assert read_result(tmp_path / "warn")["health"] == single["health"]
    assert [(r["code"], r["step"]) for r in _health(tmp_path / "warn")] == \
        [(r["code"], r["step"]) for r in _health(tmp_path / "single")]
    stopped = [(tmp_path / f"stop.stopped.{rank}").read_text() for rank in (0, 1)]
    assert all(s.startswith("unhealthy run at step 50: source_at_chance") for s in stopped), stopped
    assert not (tmp_path / "stop" / "result.json").exists()
