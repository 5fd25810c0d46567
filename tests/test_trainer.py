"""The shared trainer: learning, accumulation, AMP, schedules, resume after SIGKILL, DDP equivalence."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from domainadapt.runs import run
from domainadapt.train import TrainConfig, load_checkpoint
from domainadapt.train.logging import read_metrics
from domainadapt.train.schedules import dann_annealing, lr_factor

from toy import write_toy_pair

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> tuple[str, str]:
    return write_toy_pair(tmp_path_factory.mktemp("toy"))


def _config(toy, **overrides) -> TrainConfig:
    source, target = toy
    base = dict(source=source, target=target, image_size=16, steps=60, batch_size=32, lr=0.05, device="cpu",
                progress=False, log_every=10)
    base.update(overrides)
    return TrainConfig(**base)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), DOMAINADAPT_CACHE=env.get("DOMAINADAPT_CACHE", "/tmp/da-cache"))
    return env


def test_source_only_learns_the_source(toy, tmp_path):
    result = run(_config(toy, steps=150), tmp_path / "run")
    assert result["metrics"]["source_test/acc"] > 0.9  # chance is 0.1
    assert (tmp_path / "run" / "result.json").is_file()
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    losses = [r["train/cls"] for r in records if "train/cls" in r]
    assert losses[-1] < 0.5 * losses[0]


def test_oracle_trains_on_target_labels(toy, tmp_path):
    result = run(_config(toy, method="target_oracle", steps=150), tmp_path / "run")
    assert result["metrics"]["target_test/acc"] > 0.9


def test_grad_accumulation_matches_one_big_batch(toy, tmp_path):
    a = run(_config(toy, steps=20, batch_size=64), tmp_path / "a")
    b = run(_config(toy, steps=20, batch_size=64, grad_accum=2), tmp_path / "b")
    assert a["metrics"]["train/total"] == pytest.approx(b["metrics"]["train/total"], abs=1e-5)
    wa = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt")["modules"]
    wb = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")["modules"]
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=1e-5, rtol=1e-4)


def test_bf16_autocast_and_fp16_scaler_train_on_cpu(toy, tmp_path):
    for amp in ("bf16", "fp16"):
        result = run(_config(toy, steps=80, amp=amp), tmp_path / amp)
        assert math.isfinite(result["metrics"]["train/total"])
        assert result["metrics"]["source_test/acc"] > 0.5, amp


def test_grad_clip_bounds_the_update(toy, tmp_path):
    # with clipping at a tiny norm and lr 1, one SGD step (no momentum/decay) moves the weights by ≤ that norm
    cfg = _config(toy, steps=1, grad_clip=1e-3, lr=1.0, momentum=0.0, weight_decay=0.0)
    run(cfg, tmp_path / "clip")
    from domainadapt.methods import MethodContext, build_method
    from domainadapt.models import build_model
    from domainadapt.seeding import seed_everything

    seed_everything(0)
    fresh = build_model("digits_cnn", 10, 16)
    build_method("source_only", MethodContext(fresh.feature_dim, 10, 1))
    after = load_checkpoint(tmp_path / "clip" / "checkpoints" / "last.pt")["modules"]
    delta = torch.sqrt(sum(((after["model." + k] - v) ** 2).sum() for k, v in fresh.state_dict().items()))
    assert 0 < float(delta) <= 1e-3 + 1e-9


def test_dann_schedule_values():
    assert dann_annealing(0.0) == 1.0
    assert dann_annealing(1.0) == pytest.approx(1 / 11**0.75)
    f = lr_factor("dann", total_steps=100)
    assert f(50) == pytest.approx(1 / 6**0.75)
    w = lr_factor("constant", total_steps=100, warmup_steps=10)
    assert w(0) == pytest.approx(0.1) and w(9) == pytest.approx(1.0) and w(50) == 1.0
    assert lr_factor("cosine", 100)(100) == pytest.approx(0.0, abs=1e-12)


def test_lr_schedule_reaches_the_optimizer(toy, tmp_path):
    run(_config(toy, steps=20, schedule="dann", log_every=10), tmp_path / "run")
    lrs = {r["step"]: r["lr"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "lr" in r}
    assert lrs[10] == pytest.approx(0.05 * dann_annealing(10 / 20))


def test_sweep_reruns_only_unfinished(toy, tmp_path):
    from domainadapt.runs import run_name, sweep

    configs = [_config(toy, steps=5, seed=s) for s in (0, 1)]
    sweep(configs, tmp_path)
    dirs = [tmp_path / run_name(c) for c in configs]
    stamps = [(d / "result.json").stat().st_mtime_ns for d in dirs]
    (dirs[1] / "result.json").unlink()
    time.sleep(0.01)
    results = sweep(configs, tmp_path)
    assert (dirs[0] / "result.json").stat().st_mtime_ns == stamps[0]  # not re-run
    assert (dirs[1] / "result.json").is_file()
    assert [r["config"]["seed"] for r in results] == [0, 1]


def _train_cmd(toy, out: Path, steps: int, extra: list[str] = ()) -> list[str]:
    source, target = toy
    return [sys.executable, "-m", "domainadapt", "train", "--source", source, "--target", target,
            "--image-size", "16", "--steps", str(steps), "--batch-size", "32", "--lr", "0.05", "--device", "cpu",
            "--deterministic", "--no-progress", "--log-every", "25", "--checkpoint-every", "50", "--eval-every", "500",
            "--out", str(out), *extra]


def test_sigkill_then_resume_equals_uninterrupted_run(toy, tmp_path):
    steps = 1500
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(toy, killed, steps), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt = killed / "checkpoints" / "last.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert not (killed / "result.json").exists()
    step_at_kill = load_checkpoint(ckpt)["step"]
    assert 0 < step_at_kill < steps

    subprocess.run(_train_cmd(toy, killed, steps), env=_env(), check=True, capture_output=True)
    reference = tmp_path / "reference"
    subprocess.run(_train_cmd(toy, reference, steps), env=_env(), check=True, capture_output=True)

    a = load_checkpoint(killed / "checkpoints" / "last.pt")
    b = load_checkpoint(reference / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == steps
    for k in b["modules"]:
        assert torch.equal(a["modules"][k], b["modules"][k]), k
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    ra = json.loads((killed / "result.json").read_text())["metrics"]
    rb = json.loads((reference / "result.json").read_text())["metrics"]
    assert ra == rb
    # the killed run's log has each step once (records after its last checkpoint were dropped on resume)
    steps_logged = [r["step"] for r in read_metrics(killed / "metrics.jsonl") if "train/total" in r]
    assert steps_logged == sorted(set(steps_logged)) and steps_logged[-1] == steps


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_ddp_matches_one_process(toy, tmp_path):
    steps = ["--steps", "30"]
    one = tmp_path / "one"
    cmd1 = _train_cmd(toy, one, 30)
    subprocess.run(cmd1, env=_env(), check=True, capture_output=True)
    two = tmp_path / "two"
    cmd2 = _train_cmd(toy, two, 30)
    cmd2[1:3] = ["-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
                 "--master_addr=127.0.0.1", "-m", "domainadapt"]
    done = subprocess.run(cmd2, env=_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    r1 = json.loads((one / "result.json").read_text())
    r2 = json.loads((two / "result.json").read_text())
    assert r2["world_size"] == 2 and r1["world_size"] == 1
    assert abs(r1["metrics"]["train/total"] - r2["metrics"]["train/total"]) < 1e-4
    assert r1["metrics"]["target_test/acc"] == pytest.approx(r2["metrics"]["target_test/acc"], abs=0.02)
    w1 = load_checkpoint(one / "checkpoints" / "last.pt")["modules"]
    w2 = load_checkpoint(two / "checkpoints" / "last.pt")["modules"]
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], atol=1e-4, rtol=1e-3)
    del steps


def test_load_trained_model_reproduces_the_reported_accuracy(toy, tmp_path):
    from domainadapt.data import load_splits
    from domainadapt.runs import load_trained_model
    from domainadapt.inference import evaluate

    result = run(_config(toy, steps=30), tmp_path / "run")
    model, config = load_trained_model(tmp_path / "run")
    target_test = load_splits(config.target, image_size=16)["test"]
    acc = evaluate(model, target_test, device=torch.device("cpu"))["acc"]
    assert acc == result["metrics"]["target_test/acc"]


def test_gradual_unfreezing_under_two_process_ddp_matches_one_process(toy, tmp_path):
    """DDP hooks only parameters that require grad when it wraps; the trainer wraps again when a block unfreezes."""
    config = tmp_path / "gradual.json"
    config.write_text(json.dumps({"unfreeze_every": 10, "backbone_kwargs": {"batch_norm": False}}))
    one, two = tmp_path / "one", tmp_path / "two"
    subprocess.run(_train_cmd(toy, one, 30, ["--config", str(config)]), env=_env(), check=True, capture_output=True)
    cmd2 = _train_cmd(toy, two, 30, ["--config", str(config)])
    cmd2[1:3] = ["-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
                 "--master_addr=127.0.0.1", "-m", "domainadapt"]
    done = subprocess.run(cmd2, env=_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    w1 = load_checkpoint(one / "checkpoints" / "last.pt")["modules"]
    w2 = load_checkpoint(two / "checkpoints" / "last.pt")["modules"]
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], atol=1e-4, rtol=1e-3)
