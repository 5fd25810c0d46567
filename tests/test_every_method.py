"""Every registered method, by name (`available_methods()`), so a new method file is covered the moment it exists:
a few steps on the toy domains, exact resume after a kill, bf16 autocast on CPU, and its options round-trip
(each constructor default passed explicitly through method_kwargs builds the same method). Methods that adapt a
trained model (`needs_trained_model`: SHOT, TENT, AdaBN) start from a 4-step source_only run; a method with a
`refresh_every` option refreshes every 2 steps here, so the killed run resumes across a refresh; a method with
update phases has each phase's losses compared."""

from __future__ import annotations

import inspect
import math

import pytest
import torch

from domainadapt.data.unlabelled import UnlabelledInputs
from domainadapt.methods import MethodContext, TargetPass, available_methods, build_method, get_method_class
from domainadapt.models import build_model
from domainadapt.models.classifier import fresh_copy
from domainadapt.runs import run
from domainadapt.train import TrainConfig, load_checkpoint
from domainadapt.train.logging import read_metrics

from killing import run_killed_after
from toy import write_toy_pair

# methods whose step is not an image classifier's: they need another task, tested with it
NEEDS_OTHER_TASK = {"masked_lm": "trains task='masked_lm' on text batches (tests/test_text_mlm.py)",
                    "causal_lm": "trains task='causal_lm' on token blocks (tests/test_causal_lm.py)"}
METHODS = available_methods()


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> tuple[str, str]:
    return write_toy_pair(tmp_path_factory.mktemp("toy"), n=80)


def _base(toy, method: str) -> dict:
    source, target = toy
    return dict(source=source, target=target, method=method, image_size=16, steps=4, batch_size=16, lr=0.01,
                device="cpu", progress=False, log_every=1, eval_batch_size=256, deterministic=True,
                on_unhealthy="off")


@pytest.fixture(scope="module")
def source_run(toy, tmp_path_factory) -> str:
    """A finished source_only run on the toy pair (BatchNorm on): what source-free / test-time methods adapt."""
    folder = tmp_path_factory.mktemp("source") / "run"
    run(TrainConfig(**{**_base(toy, "source_only"), "backbone_kwargs": {"batch_norm": True}}), folder)
    return str(folder)


def _config(toy, method: str, source_run: str | None = None, **overrides) -> TrainConfig:
    base = _base(toy, method)
    cls = get_method_class(method)
    if cls.needs_trained_model:
        assert source_run is not None
        base.update(init_from=source_run, backbone_kwargs={"batch_norm": True})
    if "refresh_every" in inspect.signature(cls.__init__).parameters:
        base["method_kwargs"] = {"refresh_every": 2}
    base.update(overrides)
    return TrainConfig(**base)


def _skip_other_task(method: str) -> None:
    if method in NEEDS_OTHER_TASK:
        pytest.skip(f"{method} {NEEDS_OTHER_TASK[method]}")


@pytest.mark.parametrize("method", METHODS)
def test_a_killed_run_resumes_to_the_uninterrupted_runs_weights(toy, source_run, tmp_path, monkeypatch, method):
    _skip_other_task(method)
    if not get_method_class(method).trains:
        pytest.skip(f"{method} does not train (trains = False): nothing to kill")
    config = _config(toy, method, source_run, checkpoint_every=2)
    run_killed_after(config, tmp_path / "killed", 3, monkeypatch)  # the last checkpoint is step 2
    resumed = run(config, tmp_path / "killed")
    reference = run(config, tmp_path / "reference")
    a = load_checkpoint(tmp_path / "killed" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "reference" / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == 4 and a["streams"] == b["streams"]
    assert a["modules"].keys() == b["modules"].keys()
    for k in b["modules"]:
        if isinstance(b["modules"][k], dict):  # a module's extra state (SHOT's pseudo-labels)
            assert a["modules"][k].keys() == b["modules"][k].keys(), k
            assert all(torch.equal(a["modules"][k][n], b["modules"][k][n]) for n in b["modules"][k]), k
        else:
            assert torch.equal(a["modules"][k], b["modules"][k]), k
    assert resumed["metrics"] == reference["metrics"]
    assert all(math.isfinite(v) for k, v in reference["metrics"].items() if isinstance(v, float)), reference["metrics"]


@pytest.mark.parametrize("method", METHODS)
def test_bf16_autocast_on_cpu_gives_finite_losses(toy, source_run, tmp_path, method):
    _skip_other_task(method)
    if not get_method_class(method).trains:
        pytest.skip(f"{method} does not train (trains = False): no losses")
    run(_config(toy, method, source_run, steps=3, amp="bf16"), tmp_path / "run")
    losses = [(k, v) for r in read_metrics(tmp_path / "run" / "metrics.jsonl") for k, v in r.items()
              if k.startswith("train/")]
    assert losses and all(math.isfinite(v) for _, v in losses), losses


def _defaults(method: str) -> dict:
    params = inspect.signature(get_method_class(method).__init__).parameters
    return {n: p.default for n, p in params.items() if n not in ("self", "context")
            and p.default is not inspect.Parameter.empty}


class _Rows(torch.utils.data.Dataset):
    def __init__(self, x: torch.Tensor) -> None:
        self.x = x

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], -1


def _built(method: str, kwargs: dict) -> tuple[dict[str, tuple[int, ...]], dict[str, torch.Tensor]]:
    """The method's parameter shapes and its losses on one fixed batch, for each update phase (same seeds for
    both builds); after its refresh for a method with one; for a method that does not train, the model's
    buffers after its refresh."""
    torch.manual_seed(0)
    model = build_model("digits_cnn", 10, 16, backbone_kwargs={"batch_norm": True})
    context = MethodContext(feature_dim=model.feature_dim, num_classes=10, total_steps=4,
                            new_head=lambda: fresh_copy(model.head))
    torch.manual_seed(1)
    m = build_method(method, context, **kwargs)
    g = torch.Generator().manual_seed(2)
    x_s, x_t = torch.rand(8, 3, 16, 16, generator=g), torch.rand(8, 3, 16, 16, generator=g)
    y = torch.arange(8) % 10
    torch.manual_seed(3)
    if m.refresh_every > 0 or not m.trains:
        with torch.no_grad():
            m.refresh(model, TargetPass(UnlabelledInputs(_Rows(x_t)), step=0, device=torch.device("cpu")))
        model.train()
    if not m.trains:
        return ({n: tuple(p.shape) for n, p in m.named_parameters()},
                {n: b.detach().clone().float() for n, b in model.named_buffers()})
    losses = {}
    for phase in m.update_phases() or (None,):
        extra = {"phase": phase} if phase is not None else {}
        if m.uses_target_index:
            extra["index_t"] = torch.arange(8)
        out = m.compute_losses(model, x_s if m.uses_source else None, y if m.uses_source else None,
                               x_t if m.uses_target else None, y if m.uses_target_labels else None, 0.5, 2, **extra)
        losses.update({f"{phase}/{k}": v.detach() for k, v in out.items()})
    return {n: tuple(p.shape) for n, p in m.named_parameters()}, losses


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
