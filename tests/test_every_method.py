"""Every registered method, by name (`available_methods()`), so a new method file is covered the moment it exists:
a few steps on the toy domains, exact resume after a kill, bf16 autocast on CPU, and its options round-trip
(each constructor default passed explicitly through method_kwargs builds the same method)."""

from __future__ import annotations

import inspect
import math

import pytest
import torch

from domainadapt.methods import MethodContext, available_methods, build_method, get_method_class
from domainadapt.models import build_model
from domainadapt.runs import run
from domainadapt.train import TrainConfig, load_checkpoint
from domainadapt.train.logging import read_metrics

from killing import run_killed_after
from toy import write_toy_pair

# methods whose step is not an image classifier's: they need another task, tested with it
NEEDS_OTHER_TASK = {"masked_lm": "trains task='masked_lm' on text batches (tests/test_text_mlm.py)"}
METHODS = available_methods()


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> tuple[str, str]:
    return write_toy_pair(tmp_path_factory.mktemp("toy"), n=80)


def _config(toy, method: str, **overrides) -> TrainConfig:
    source, target = toy
    base = dict(source=source, target=target, method=method, image_size=16, steps=4, batch_size=16, lr=0.01,
                device="cpu", progress=False, log_every=1, eval_batch_size=256, deterministic=True,
                on_unhealthy="off")
    base.update(overrides)
    return TrainConfig(**base)


def _skip_other_task(method: str) -> None:
    if method in NEEDS_OTHER_TASK:
        pytest.skip(f"{method} {NEEDS_OTHER_TASK[method]}")


@pytest.mark.parametrize("method", METHODS)
def test_a_killed_run_resumes_to_the_uninterrupted_runs_weights(toy, tmp_path, monkeypatch, method):
    _skip_other_task(method)
    config = _config(toy, method, checkpoint_every=2)
    run_killed_after(config, tmp_path / "killed", 3, monkeypatch)  # the last checkpoint is step 2
    resumed = run(config, tmp_path / "killed")
    reference = run(config, tmp_path / "reference")
    a = load_checkpoint(tmp_path / "killed" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "reference" / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == 4 and a["streams"] == b["streams"]
    assert a["modules"].keys() == b["modules"].keys()
    for k in b["modules"]:
        assert torch.equal(a["modules"][k], b["modules"][k]), k
    assert resumed["metrics"] == reference["metrics"]
    assert all(math.isfinite(v) for k, v in reference["metrics"].items() if isinstance(v, float)), reference["metrics"]


@pytest.mark.parametrize("method", METHODS)
def test_bf16_autocast_on_cpu_gives_finite_losses(toy, tmp_path, method):
    _skip_other_task(method)
    run(_config(toy, method, steps=3, amp="bf16"), tmp_path / "run")
    losses = [(k, v) for r in read_metrics(tmp_path / "run" / "metrics.jsonl") for k, v in r.items()
              if k.startswith("train/")]
    assert losses and all(math.isfinite(v) for _, v in losses), losses


def _defaults(method: str) -> dict:
    params = inspect.signature(get_method_class(method).__init__).parameters
    return {n: p.default for n, p in params.items() if n not in ("self", "context")
            and p.default is not inspect.Parameter.empty}


def _built(method: str, kwargs: dict) -> tuple[dict[str, tuple[int, ...]], dict[str, torch.Tensor]]:
    """The method's parameter shapes and its losses on one fixed batch (same seeds for both builds)."""
    torch.manual_seed(0)
    model = build_model("digits_cnn", 10, 16)
    context = MethodContext(feature_dim=model.feature_dim, num_classes=10, total_steps=4)
    torch.manual_seed(1)
    m = build_method(method, context, **kwargs)
    g = torch.Generator().manual_seed(2)
    x_s, x_t = torch.rand(8, 3, 16, 16, generator=g), torch.rand(8, 3, 16, 16, generator=g)
    y = torch.arange(8) % 10
    torch.manual_seed(3)
    losses = m.compute_losses(model, x_s if m.uses_source else None, y if m.uses_source else None,
                              x_t if m.uses_target else None, y if m.uses_target_labels else None, 0.5, 2)
    return {n: tuple(p.shape) for n, p in m.named_parameters()}, {k: v.detach() for k, v in losses.items()}


@pytest.mark.parametrize("method", METHODS)
def test_every_option_given_its_default_explicitly_builds_the_same_method(method):
    _skip_other_task(method)
    defaults = _defaults(method)
    config = TrainConfig(method=method, method_kwargs=dict(defaults)).validate()  # as a config holds them
    shapes, losses = _built(method, {})
    shapes2, losses2 = _built(method, config.method_kwargs)
    assert shapes == shapes2
    assert losses.keys() == losses2.keys() and losses
    for k in losses:
        assert torch.equal(losses[k], losses2[k]), k
