"""The trainer's combined claims (README): exact resume of every piece of state, AMP really autocasts, DDP on
2 gloo processes trains what 1 process trains (accumulation, a method's own modules, BatchNorm), and a sweep on
2 worker processes gives what it gives on 1.

Resume is tested in-process: `Trainer.train_step` is patched to die (an exception) a few steps after the last
checkpoint, exactly where a SIGKILL would leave the run directory (checkpoint at step 4, metrics logged past
it, no result.json); the same `run()` call then resumes it and must end bitwise equal to a run never stopped.
(tests/test_trainer.py covers the real SIGKILL of a CLI run once; this file covers the state of every feature.)
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from domainadapt.methods import Method, MethodContext
from domainadapt.models import build_model
from domainadapt.runs import read_result, run, run_many
from domainadapt.train import TrainConfig, load_checkpoint
from domainadapt.train.checkpoint import save_checkpoint
from domainadapt.train.logging import read_metrics
from domainadapt.train.trainer import Trainer

from gloo import run_configs_on_two_ranks
from toy import write_toy_pair

STEPS, CHECKPOINT_EVERY, KILL_AT = 12, 4, 6  # the kill comes 2 steps after the step-4 checkpoint


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> tuple[str, str]:
    return write_toy_pair(tmp_path_factory.mktemp("toy"))


@pytest.fixture(autouse=True)
def _restore_global_torch_state():
    """run(deterministic=True) switches torch's deterministic mode for the whole process: put it back."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(deterministic)


def _config(toy, **overrides) -> TrainConfig:
    source, target = toy
    base = dict(source=source, target=target, image_size=16, steps=STEPS, batch_size=32, lr=0.05, device="cpu",
                progress=False, deterministic=True, log_every=5, eval_every=8, checkpoint_every=CHECKPOINT_EVERY)
    base.update(overrides)
    return TrainConfig(**base)


class _Killed(Exception):
    """Stands in for SIGKILL: raised right after optimizer step KILL_AT, before anything else is written."""


def _run_and_kill(config: TrainConfig, run_dir: Path, monkeypatch, kill_at: int = KILL_AT) -> None:
    original = Trainer.train_step

    def dying(self):
        original(self)
        if self.step == kill_at:
            raise _Killed(kill_at)

    with monkeypatch.context() as m:
        m.setattr(Trainer, "train_step", dying)
        with pytest.raises(_Killed):
            run(config, run_dir)
    assert read_result(run_dir) is None  # unfinished
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["step"] == CHECKPOINT_EVERY
    logged = [r["step"] for r in read_metrics(run_dir / "metrics.jsonl") if "train/total" in r]
    assert logged and max(logged) > CHECKPOINT_EVERY  # records past the checkpoint exist, to be dropped on resume


def assert_identical(a: Any, b: Any, where: str = "checkpoint") -> None:
    """Bitwise equality of nested state (tensors: same dtype, shape and every bit via torch.equal)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), where
        assert a.dtype == b.dtype and a.shape == b.shape, (where, a.dtype, b.dtype, a.shape, b.shape)
        assert torch.equal(a, b), f"{where}: tensors differ (max |Δ| {float((a.double() - b.double()).abs().max())})"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), (where, sorted(set(a) ^ set(b)))
        for k in a:
            assert_identical(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), where
    else:
        assert a == b, (where, a, b)


def _assert_resumed_equals_reference(resumed_dir: Path, reference_dir: Path) -> tuple[dict, dict]:
    a = load_checkpoint(resumed_dir / "checkpoints" / "last.pt")
    b = load_checkpoint(reference_dir / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == STEPS
    for k in b["modules"]:  # the weights first, with the name of the first tensor that differs
        assert torch.equal(a["modules"][k], b["modules"][k]), k
    # then everything else: optimizer, scheduler, grad scaler, streams, every RNG, loss sums (not the wall clock)
    assert_identical({k: v for k, v in a.items() if k != "train_seconds"},
                     {k: v for k, v in b.items() if k != "train_seconds"})
    ra, rb = read_result(resumed_dir), read_result(reference_dir)
    assert ra["metrics"] == rb["metrics"] and ra["steps"] == rb["steps"] == STEPS
    # the resumed log holds every record of the uninterrupted one, once, and a "resumed" marker
    log_a = read_metrics(resumed_dir / "metrics.jsonl")
    log_b = read_metrics(reference_dir / "metrics.jsonl")
    assert [r for r in log_a if r.get("event") != "resumed"] == log_b
    assert {"step": CHECKPOINT_EVERY, "event": "resumed"} in log_a
    return a, b


RESUME_CASES = {
    "dann_method_modules": dict(method="dann", method_kwargs={"hidden": [32, 32]}),
    "adam": dict(optimizer="adam", lr=1e-3),
    "adamw_weight_decay": dict(optimizer="adamw", lr=1e-3, weight_decay=0.01),
    "dann_schedule": dict(schedule="dann"),
    "cosine_schedule_warmup": dict(schedule="cosine", warmup_steps=3),
    "num_workers_2": dict(num_workers=2),
    "fp16_grad_scaler": dict(amp="fp16"),
    "bf16_autocast": dict(amp="bf16"),
    "grad_accum_and_clip": dict(grad_accum=2, grad_clip=0.5),
    "batch_norm_backbone": dict(backbone_kwargs={"batch_norm": True}),
    "all_at_once": dict(method="dann", method_kwargs={"hidden": [32]}, optimizer="adam", lr=1e-3, schedule="dann",
                        amp="fp16", num_workers=2, grad_accum=2, backbone_kwargs={"batch_norm": True}),
}


@pytest.mark.parametrize("overrides", list(RESUME_CASES.values()), ids=list(RESUME_CASES))
def test_killed_run_resumes_bitwise_equal_to_an_uninterrupted_run(toy, tmp_path, monkeypatch, one_torch_thread,
                                                                   overrides):
    config = _config(toy, **overrides)
    _run_and_kill(config, tmp_path / "killed", monkeypatch)
    run(config, tmp_path / "killed")  # the same command again: resumes from step 4
    run(config, tmp_path / "reference")
    a, _ = _assert_resumed_equals_reference(tmp_path / "killed", tmp_path / "reference")
    if config.method == "dann":  # the discriminator is part of what was resumed
        assert any(k.startswith("method.discriminator.") for k in a["modules"])
    if config.optimizer != "sgd":  # Adam moments and step counts were carried over
        assert all("exp_avg_sq" in s for s in a["optimizer"]["state"].values())
    if config.amp == "fp16":
        # GradScaler state: enabled on CPU, and its growth tracker counted all 12 steps (not only the 8 after the
        # resume), so the scaler's state went through the checkpoint
        assert a["scaler"] and a["scaler"]["_growth_tracker"] == STEPS, a["scaler"]
    if config.num_workers:
        assert a["streams"]["source"]["position"] > 0


@pytest.fixture(scope="module")
def pretrained(toy, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pre") / "run"
    run(_config(toy, steps=10, checkpoint_every=0, eval_every=0), out)
    return out


def test_ewc_finetuning_resumes_bitwise_equal(toy, pretrained, tmp_path, monkeypatch, one_torch_thread):
    config = _config(toy, init_from=str(pretrained), method="target_oracle", optimizer="adam", lr=1e-3,
                     regularizers={"ewc": {"lam": 100.0, "samples": 64}})
    _run_and_kill(config, tmp_path / "killed", monkeypatch)
    run(config, tmp_path / "killed")
    run(config, tmp_path / "reference")
    a, _ = _assert_resumed_equals_reference(tmp_path / "killed", tmp_path / "reference")
    ewc = {k: v for k, v in a["modules"].items() if k.startswith("regularizers.ewc.")}
    assert any(k.startswith("regularizers.ewc.fisher0__") for k in ewc) and int(ewc["regularizers.ewc.num_tasks"]) == 1
    pre = load_checkpoint(pretrained / "checkpoints" / "last.pt")["modules"]
    anchors = {k: v for k, v in ewc.items() if k.startswith("regularizers.ewc.anchor0__")}
    assert anchors
    for k, v in anchors.items():  # the anchor is still the pretrained weights after the resume
        name = "model." + k[len("regularizers.ewc.anchor0__"):].replace("__", ".")
        assert torch.equal(v, pre[name].float()), k
    assert read_result(tmp_path / "killed")["metrics"]["train/ewc"] > 0


def test_resume_refuses_a_checkpoint_of_another_world_size(toy, tmp_path, monkeypatch, one_torch_thread):
    config = _config(toy)
    run_dir = tmp_path / "run"
    _run_and_kill(config, run_dir, monkeypatch)
    ckpt = run_dir / "checkpoints" / "last.pt"
    state = load_checkpoint(ckpt)
    state["world_size"] = 2  # as if written by `torchrun --nproc_per_node=2`
    save_checkpoint(ckpt, state)
    with pytest.raises(ValueError, match=r"written by 2 processes, this run has 1"):
        run(config, run_dir)
    assert read_result(run_dir) is None
    assert load_checkpoint(ckpt)["step"] == CHECKPOINT_EVERY  # nothing trained, nothing overwritten


# ---------------------------------------------------------------------------------------------------- AMP


class _AutocastProbe(Method):
    """Source cross-entropy; records what autocast looks like inside the trainer's forward."""

    name = "_autocast_probe"  # not registered: handed to the Trainer directly

    def __init__(self, context: MethodContext) -> None:
        super().__init__(context)
        self.seen: list[dict[str, Any]] = []

    def losses(self, out, model):
        self.seen.append({"enabled": torch.is_autocast_enabled("cpu"), "dtype": torch.get_autocast_dtype("cpu"),
                          "features": out.f_s.dtype, "logits": out.logits_s.dtype,
                          "matmul": (out.f_s.float() @ out.f_s.float().T).dtype})
        return {"cls": F.cross_entropy(out.logits_s, out.y_s)}


def _tiny_images(n: int = 64, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.rand(n, 3, 16, 16, generator=g), torch.arange(n) % 10)


@pytest.mark.parametrize("amp, dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16), ("none", None)])
def test_amp_autocasts_the_training_forward_and_the_evaluation(amp, dtype, tmp_path, one_torch_thread):
    torch.manual_seed(0)
    model = build_model("digits_cnn", 10, 16)
    method = _AutocastProbe(MethodContext(model.feature_dim, 10, 3))
    config = TrainConfig(image_size=16, steps=3, batch_size=16, device="cpu", progress=False, amp=amp)
    ds = _tiny_images()
    trainer = Trainer(config, model, method, source_train=ds, target_train=_tiny_images(seed=1),
                      eval_sets={"probe": ds}, run_dir=tmp_path)
    eval_seen = []
    model.head.register_forward_hook(
        lambda m, i, o: eval_seen.append((m.training, torch.is_autocast_enabled("cpu"), o.dtype)))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer.train_step()
    trainer.train_step()
    assert len(method.seen) == 2
    for seen in method.seen:
        if dtype is None:
            assert not seen["enabled"], seen
            assert seen["features"] == seen["logits"] == seen["matmul"] == torch.float32, seen
        else:
            assert seen["enabled"] and seen["dtype"] == dtype, seen
            assert seen["features"] == seen["logits"] == seen["matmul"] == dtype, seen  # conv and linear ran in it
    # master weights stay float32 and were updated; the grad scaler is on exactly for fp16
    after = model.state_dict()
    assert all(v.dtype == torch.float32 for v in after.values())
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert all(torch.isfinite(v).all() for v in after.values())
    assert trainer.scaler.is_enabled() == (amp == "fp16")
    # evaluation runs under the same autocast, in eval mode
    eval_seen.clear()
    metrics = trainer.evaluate_all()
    assert 0.0 <= metrics["probe/acc"] <= 1.0
    assert eval_seen and all(not training for training, _, _ in eval_seen)
    assert all(enabled == (dtype is not None) for _, enabled, _ in eval_seen)
    assert all(out == (dtype or torch.float32) for _, _, out in eval_seen)


# ---------------------------------------------------------------------------------------------------- DDP

DDP_STEPS = 30
DDP_CASES = {
    "grad_accum_no_sync": dict(grad_accum=2),
    "grad_accum_4_no_sync": dict(grad_accum=4),
    "dann_method_modules": dict(method="dann", method_kwargs={"hidden": [64, 64]}),
    "dann_accum_adam_dann_schedule": dict(method="dann", method_kwargs={"hidden": [64]}, grad_accum=2,
                                          optimizer="adam", lr=1e-3, schedule="dann"),
    "batch_norm_backbone": dict(backbone_kwargs={"batch_norm": True}),
}



def _ddp_config(toy, **overrides) -> TrainConfig:
    return _config(toy, steps=DDP_STEPS, log_every=10, eval_every=0, checkpoint_every=0, **overrides)


@pytest.fixture(scope="module")
def two_process_runs(toy, tmp_path_factory) -> Path:
    """Every DDP case trained once on 2 gloo processes (one launch: the start-up is most of the cost)."""
    out = tmp_path_factory.mktemp("ddp")
    jobs = [[name, _ddp_config(toy, **kw).to_dict()] for name, kw in DDP_CASES.items()]
    proc = run_configs_on_two_ranks(jobs, out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _ddp_case(name: str, marks=()):
    return pytest.param(name, marks=marks, id=name)


@pytest.mark.parametrize("name", [
    _ddp_case("grad_accum_no_sync"),
    _ddp_case("grad_accum_4_no_sync"),
    _ddp_case("dann_method_modules"),
    _ddp_case("dann_accum_adam_dann_schedule"),
    # BatchNorm on CPU: torch's SyncBatchNorm needs CUDA; the trainer all-reduces the statistics itself
    # (train/sync_batchnorm.py). Without it: train/total 0.00875 (1 process) vs 0.01221 (2), weights apart by 0.05.
    _ddp_case("batch_norm_backbone"),
])
def test_two_gloo_processes_train_what_one_process_trains(name, toy, two_process_runs, tmp_path, one_torch_thread):
    one = tmp_path / "one"
    r1 = run(_ddp_config(toy, **DDP_CASES[name]), one)
    r2 = read_result(two_process_runs / name)
    assert r1["world_size"] == 1 and r2["world_size"] == 2
    assert r1["config_hash"] == r2["config_hash"]
    # the tolerances of tests/test_trainer.py::test_two_process_ddp_matches_one_process
    assert abs(r1["metrics"]["train/total"] - r2["metrics"]["train/total"]) < 1e-4
    assert r1["metrics"]["target_test/acc"] == pytest.approx(r2["metrics"]["target_test/acc"], abs=0.02)
    w1 = load_checkpoint(one / "checkpoints" / "last.pt")["modules"]
    w2 = load_checkpoint(two_process_runs / name / "checkpoints" / "last.pt")["modules"]
    assert w1.keys() == w2.keys()
    if DDP_CASES[name].get("method") == "dann":
        assert any(k.startswith("method.discriminator.") for k in w1)
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], atol=1e-4, rtol=1e-3, msg=lambda m, k=k: f"{k}: {m}")


# ---------------------------------------------------------------------------------------------------- sweeps


def test_run_many_on_two_workers_equals_one_worker(toy, tmp_path, monkeypatch, one_torch_thread):
    monkeypatch.setenv("DOMAINADAPT_THREADS", "1")  # the same thread count in both, so the same kernels' sums
    configs = [_config(toy, steps=8, seed=0, method="dann", method_kwargs={"hidden": [32]}),
               _config(toy, steps=8, seed=1, optimizer="adam", lr=1e-3),
               _config(toy, steps=8, seed=2, amp="bf16", schedule="cosine")]
    serial = run_many([(c, tmp_path / "serial" / str(i)) for i, c in enumerate(configs)], workers=1)
    parallel = run_many([(c, tmp_path / "parallel" / str(i)) for i, c in enumerate(configs)], workers=2)
    assert [r["config"]["seed"] for r in parallel] == [0, 1, 2]  # results in the order of the jobs
    for i, (a, b) in enumerate(zip(serial, parallel)):
        assert a["metrics"] == b["metrics"], i
        assert a["config_hash"] == b["config_hash"] and a["steps"] == b["steps"] == 8
        wa = load_checkpoint(tmp_path / "serial" / str(i) / "checkpoints" / "last.pt")["modules"]
        wb = load_checkpoint(tmp_path / "parallel" / str(i) / "checkpoints" / "last.pt")["modules"]
        assert_identical(wa, wb, f"job {i}")
