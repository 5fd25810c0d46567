"""The plug-in point: registry, discovery, and what a method does (and does not) see."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from domainadapt.methods import (
    Method,
    MethodContext,
    MethodError,
    available_methods,
    build_method,
    register_method,
)
from domainadapt.runs import run
from domainadapt.train import TrainConfig

from toy import write_toy_pair

SEEN: dict[str, object] = {}


class _Spy(Method):
    """Records what the trainer hands a method (test only; registered by the `spy_method` fixture, not at import,
    so the global registry does not keep a test's method for the rest of the session)."""

    name = "_spy_for_tests"

    def __init__(self, context, weight: float = 1.0):
        super().__init__(context)
        self.extra = torch.nn.Linear(context.feature_dim, 2)  # an owned module: optimised + checkpointed

    def losses(self, out, model):
        SEEN.update(y_t=out.y_t, f_s=tuple(out.f_s.shape), f_t=tuple(out.f_t.shape), progress=out.progress)
        dom = F.cross_entropy(self.extra(torch.cat([out.f_s, out.f_t])),
                              torch.cat([torch.zeros(len(out.f_s)), torch.ones(len(out.f_t))]).long())
        return {"cls": F.cross_entropy(out.logits_s, out.y_s), "dom": dom}


@pytest.fixture()
def spy_method():
    """Register `_Spy` for one test and take it out of the registry afterwards (restoring any previous entry)."""
    from domainadapt.methods.registry import _REGISTRY

    before = _REGISTRY.get(_Spy.name)
    register_method(_Spy)
    try:
        yield _Spy
    finally:
        if before is None:
            _REGISTRY.pop(_Spy.name, None)
        else:
            _REGISTRY[_Spy.name] = before


def test_the_spy_is_registered_only_while_a_test_uses_it(request):
    assert "_spy_for_tests" not in available_methods()
    request.getfixturevalue("spy_method")
    assert "_spy_for_tests" in available_methods()


def test_builtin_methods_are_discovered():
    assert {"source_only", "target_oracle"} <= set(available_methods())


def test_unknown_method_and_options(spy_method):
    ctx = MethodContext(feature_dim=4, num_classes=3, total_steps=10)
    with pytest.raises(MethodError, match="unknown method 'x'"):
        build_method("x", ctx)
    with pytest.raises(MethodError, match=r"\['lam'\]"):
        build_method("_spy_for_tests", ctx, lam=1)


def test_method_sees_one_shared_forward_and_no_target_labels(tmp_path, spy_method):
    src, tgt = write_toy_pair(tmp_path)
    cfg = TrainConfig(method="_spy_for_tests", source=src, target=tgt, image_size=16, steps=4, batch_size=16,
                      device="cpu", progress=False)
    run(cfg, tmp_path / "run")
    assert SEEN["y_t"] is None  # unsupervised adaptation never receives target labels
    assert SEEN["f_s"] == SEEN["f_t"] == (16, 48)
    assert SEEN["progress"] == pytest.approx(3 / 4)
    from domainadapt.train import load_checkpoint

    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert "method.extra.weight" in state["modules"]
    assert len(state["optimizer"]["param_groups"]) == 2  # model + the method's own modules
