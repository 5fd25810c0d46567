"""The method plug-in point: options converted and checked against the constructor, diagnostics a method reports
without training them (`Method.report`), the package version and method source hash in result.json."""

from __future__ import annotations

import argparse
import json
import re
import warnings

import pytest
import torch
import torch.nn.functional as F

import domainadapt
import domainadapt.methods as methods
from domainadapt import runs
from domainadapt.cli import build_parser, train_config
from domainadapt.methods import Method, MethodError, check_method_kwargs
from domainadapt.methods.registry import _REGISTRY
from domainadapt.runs import check_inputs, run
from domainadapt.train import TrainConfig, load_checkpoint
from domainadapt.train.logging import read_metrics

from toy import write_toy_pair


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> tuple[str, str]:
    return write_toy_pair(tmp_path_factory.mktemp("toy"), n=80)


def _config(toy, **overrides) -> TrainConfig:
    source, target = toy
    base = dict(source=source, target=target, image_size=16, steps=4, batch_size=16, lr=0.01, device="cpu",
                progress=False, log_every=2, eval_batch_size=256, deterministic=True)
    base.update(overrides)
    return TrainConfig(**base)


def _cli_config(tmp_path, *argv: str) -> TrainConfig:
    args = build_parser().parse_args(["train", "--out", str(tmp_path / "out"), *argv])
    assert isinstance(args, argparse.Namespace)
    return train_config(args)


# ------------------------------------------------------------------------------------------------ 1. option types


def test_method_arg_text_becomes_the_annotated_type_and_matches_a_json_config(tmp_path):
    flags = _cli_config(tmp_path, "--method", "dann", "--method-arg", "batch_norm=False", "--method-arg",
                        "start_below=0.7", "--method-arg", "hidden=256,128")
    (tmp_path / "c.json").write_text(json.dumps({"method": "dann", "method_kwargs": {
        "batch_norm": False, "start_below": 0.7, "hidden": [256, 128]}}))
    from_file = _cli_config(tmp_path, "--config", str(tmp_path / "c.json"))
    assert flags.validate().method_kwargs == {"batch_norm": False, "start_below": 0.7, "hidden": [256, 128]}
    assert flags.config_hash() == from_file.config_hash()
    built = methods.build_method("dann", methods.MethodContext(8, 10, 4), **flags.method_kwargs)
    assert built.discriminator.net[0].out_features == 256 and built.weight == 1.0


def test_a_correctly_typed_config_keeps_its_values_and_run_key():
    config = TrainConfig(method="dann", method_kwargs={"weight": 1, "hidden": [64]})
    before = config.config_hash()
    assert config.validate().method_kwargs == {"weight": 1, "hidden": [64]}
    assert type(config.method_kwargs["weight"]) is int and config.config_hash() == before
    assert check_method_kwargs("dann", {"weight": 1}) == {"weight": 1.0}  # what the constructor gets


@pytest.mark.parametrize("kwargs, message", [
    ({"weight": "abc"}, "method 'dann': option 'weight' must be a number, got 'abc'"),
    ({"batch_norm": "maybe"}, "method 'dann': option 'batch_norm' must be true or false, got 'maybe'"),
    ({"hidden": "a,b"}, "method 'dann': option 'hidden' must be a list of integers, got 'a,b'"),
    ({"weight": True}, "method 'dann': option 'weight' must be a number, got True"),
    ({"wieght": 1.0}, "method 'dann' does not take option(s) ['wieght']"),
])
def test_a_bad_option_is_one_error_naming_method_option_and_type(kwargs, message):
    with pytest.raises(MethodError, match=re.escape(message)):
        check_inputs(TrainConfig(method="dann", method_kwargs=kwargs))


def test_optional_options_take_none_and_numbers_as_text():
    assert check_method_kwargs("importance_weighted", {"clip": "none"}) == {"clip": None}
    assert check_method_kwargs("importance_weighted", {"clip": "3"}) == {"clip": 3.0}
    with pytest.raises(MethodError, match=r"option 'clip' must be a number or None, got 'x'"):
        check_method_kwargs("importance_weighted", {"clip": "x"})


# ------------------------------------------------------------------------------------------------- 2. reports


class _Reporting(Method):
    """Source CE; reports the step number (a float) and the loss (a tensor), never trained."""

    name = "_reporting_test"

    def losses(self, out, model):
        cls = F.cross_entropy(out.logits_s, out.y_s)
        self.report("step", float(out.step))
        self.report("cls_copy", cls * 1000)
        return {"cls": cls}


def test_reports_are_logged_averaged_over_the_log_interval_and_not_trained(toy, tmp_path, monkeypatch):
    monkeypatch.setitem(_REGISTRY, _Reporting.name, _Reporting)
    run(_config(toy, method=_Reporting.name), tmp_path / "run")
    logged = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "train/cls" in r]
    assert [r["method/step"] for r in logged] == [0.5, 2.5]  # steps 0,1 then 2,3
    for r in logged:
        assert r["method/cls_copy"] == pytest.approx(1000 * r["train/cls"], rel=1e-4)
        assert r["train/total"] == pytest.approx(r["train/cls"])  # the report is not in the loss
    assert not any(k.startswith("method/") for k in run(_config(toy, method=_Reporting.name),
                                                        tmp_path / "run")["metrics"])


def test_dann_reports_its_grl_coefficient_and_discriminator_accuracy_bit_neutrally(toy, tmp_path, monkeypatch):
    config = _config(toy, method="dann", method_kwargs={"start_below": 1.0})  # the paper's ramp: λ > 0 from step 1
    run(config, tmp_path / "reported")
    logged = [r for r in read_metrics(tmp_path / "reported" / "metrics.jsonl") if "train/cls" in r]
    assert len(logged) == 2
    for r in logged:
        assert 0.0 <= r["method/domain_acc"] <= 1.0 and 0.0 <= r["method/grl_coeff"] <= 1.0
    assert logged[0]["method/grl_coeff"] < logged[1]["method/grl_coeff"]
    with monkeypatch.context() as m:
        m.setattr(Method, "report", lambda self, name, value: None)
        run(config, tmp_path / "silent")
    assert not any("method/grl_coeff" in r for r in read_metrics(tmp_path / "silent" / "metrics.jsonl"))
    a = load_checkpoint(tmp_path / "reported" / "checkpoints" / "last.pt")["modules"]
    b = load_checkpoint(tmp_path / "silent" / "checkpoints" / "last.pt")["modules"]
    for k in b:
        assert torch.equal(a[k], b[k]), k


def test_report_takes_a_float_or_a_0d_tensor():
    m = _Reporting(methods.MethodContext(8, 10, 4))
    m.report("a", 1.0)
    m.report("a", torch.tensor(3.0, requires_grad=True))
    with pytest.raises(ValueError, match="0-d tensor"):
        m.report("b", torch.ones(3))
    total, count = m.take_reports()["a"]
    assert count == 2 and float(total) == 4.0 and not total.requires_grad
    assert m.take_reports() == {}


# ---------------------------------------------------------------------------------------- 3. version, source hash


def test_result_records_version_and_method_source_hash_and_warns_when_the_method_changed(toy, tmp_path,
                                                                                          monkeypatch):
    config = _config(toy, steps=2)
    first = run(config, tmp_path / "run")
    assert first["versions"]["domainadapt"] == domainadapt.__version__
    assert re.fullmatch(r"[0-9a-f]{12}", first["versions"]["method_source"])
    assert first["versions"]["method_source"] == runs.method_source_hash("source_only")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        assert run(config, tmp_path / "run") == first  # same code: no warning
    monkeypatch.setattr(runs, "method_source_hash", lambda name: "0123456789ab")
    with pytest.warns(UserWarning, match=r"run .*run: the code of method 'source_only' changed since this run"):
        again = run(config, tmp_path / "run")
    assert again == first


# ------------------------------------------------------------------------------------------------- 5. exports


def test_reusable_parts_are_exported_from_domainadapt_methods():
    for name in ("grad_reverse", "grl_coefficient", "DomainDiscriminator", "domain_labels", "AdversaryWarmStart",
                 "StepOutput", "MethodContext", "method_option_types"):
        assert name in methods.__all__ and hasattr(methods, name), name
