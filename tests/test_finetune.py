"""Fine-tuning from a finished run (init_from), extra evaluation domains, and penalties on any method."""

from __future__ import annotations

import pytest
import torch

from domainadapt.runs import load_trained_model, run
from domainadapt.train import CheckpointError, TrainConfig, load_checkpoint

from toy import toy_domain, write_toy_pair


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return write_toy_pair(tmp_path_factory.mktemp("toy"))


@pytest.fixture(scope="module")
def pretrained(toy, tmp_path_factory):
    out = tmp_path_factory.mktemp("pre") / "run"
    run(TrainConfig(source=toy[0], target=toy[1], image_size=16, steps=60, batch_size=32, lr=0.05, device="cpu",
                    progress=False), out)
    return out


def _finetune(toy, pretrained, out, **kw):
    base = dict(method="target_oracle", source=toy[0], target=toy[1], image_size=16, steps=40, batch_size=32,
                optimizer="adam", lr=0.01, device="cpu", progress=False, init_from=str(pretrained))
    cfg = TrainConfig(**{**base, **kw})
    return run(cfg, out)


def test_init_from_starts_at_the_pretrained_weights(toy, pretrained, tmp_path):
    result = _finetune(toy, pretrained, tmp_path / "ft0", steps=1, lr=1e-12)  # ~no update: still the pretrained model
    before = load_trained_model(pretrained)[0].state_dict()
    after = load_trained_model(tmp_path / "ft0")[0].state_dict()
    for k in before:
        torch.testing.assert_close(after[k], before[k], atol=1e-6, rtol=0)
    pre = load_checkpoint(pretrained / "checkpoints" / "last.pt")
    assert result["metrics"]["source_test/acc"] == pytest.approx(
        run(TrainConfig(source=toy[0], target=toy[1], image_size=16, steps=60, batch_size=32, lr=0.05, device="cpu",
                        progress=False), pretrained)["metrics"]["source_test/acc"], abs=0.02)
    assert pre["step"] == 60


def test_extra_eval_domains_are_reported(toy, pretrained, tmp_path):
    third = tmp_path / "third.pt"
    toy_domain(seed=7, name="third").save(third)
    result = _finetune(toy, pretrained, tmp_path / "ft", steps=2, extra_eval=[f"file:{third}"])
    assert f"file:{third}_test/acc" in result["metrics"]


def test_ewc_keeps_the_source_better_than_plain_finetuning(toy, pretrained, tmp_path):
    plain = _finetune(toy, pretrained, tmp_path / "plain")
    ewc = _finetune(toy, pretrained, tmp_path / "ewc", regularizers={"ewc": {"lam": 1e6, "samples": 128}})  # a confident model: tiny Fisher
    state = load_checkpoint(tmp_path / "ewc" / "checkpoints" / "last.pt")["modules"]
    assert any(k.startswith("regularizers.ewc.") for k in state)
    assert ewc["metrics"]["train/ewc"] > 0
    # the anchor pulls where the Fisher is large: the Fisher-weighted distance to the pretrained weights is far
    # smaller after EWC than after plain fine-tuning (penalty rebuilt from the checkpoint into a fresh module)
    from domainadapt.regularizers.ewc import EWCPenalty

    penalty = EWCPenalty(1.0)
    penalty.load_state_dict({k[len("regularizers.ewc."):]: v for k, v in state.items() if k.startswith("regularizers.ewc.")})
    assert penalty.num_anchors == 1
    assert penalty(load_trained_model(pretrained)[0]).item() == 0.0
    assert penalty(load_trained_model(tmp_path / "ewc")[0]).item() < 0.2 * penalty(load_trained_model(tmp_path / "plain")[0]).item()
    assert ewc["metrics"]["source_test/acc"] >= plain["metrics"]["source_test/acc"]


def test_l2sp_pulls_toward_the_start(toy, pretrained, tmp_path):
    plain = tmp_path / "plain"
    _finetune(toy, pretrained, plain)
    result = _finetune(toy, pretrained, tmp_path / "l2sp", regularizers={"l2sp": {"alpha": 1.0}})
    assert result["metrics"]["train/l2sp"] > 0
    pre = load_trained_model(pretrained)[0].state_dict()
    dist = lambda d: sum(((load_trained_model(d)[0].state_dict()[k] - v) ** 2).sum() for k, v in pre.items())  # noqa
    assert dist(tmp_path / "l2sp") < dist(plain)


def test_bad_finetune_inputs(toy, pretrained, tmp_path):
    with pytest.raises(ValueError, match="unknown regularizer 'ewx'"):
        _finetune(toy, pretrained, tmp_path / "a", regularizers={"ewx": {}})
    with pytest.raises(ValueError, match="lam must be >= 0"):
        _finetune(toy, pretrained, tmp_path / "b", regularizers={"ewc": {"lam": -1.0}})
    with pytest.raises(CheckpointError, match="no run directory or checkpoint"):
        _finetune(toy, tmp_path / "missing", tmp_path / "c")
    (tmp_path / "unfinished" / "checkpoints").mkdir(parents=True)
    with pytest.raises(CheckpointError, match="not a finished run"):
        _finetune(toy, tmp_path / "unfinished", tmp_path / "d")
    with pytest.raises(CheckpointError, match="does not fit this run's model"):
        big = tmp_path / "big.pt"
        toy_domain(image_size=20, name="big").save(big)
        run(TrainConfig(method="target_oracle", source=f"file:{big}", target=f"file:{big}", image_size=20, steps=2,
                        batch_size=16, device="cpu", progress=False, init_from=str(pretrained)), tmp_path / "e")


def test_frozen_parameters_stay_bitwise_unchanged(toy, pretrained, tmp_path):
    _finetune(toy, pretrained, tmp_path / "head", freeze=["backbone.*"])
    before = load_trained_model(pretrained)[0].state_dict()
    after = load_trained_model(tmp_path / "head")[0].state_dict()
    assert all(torch.equal(after[k], before[k]) for k in before if k.startswith("backbone."))
    assert any(not torch.equal(after[k], before[k]) for k in before if k.startswith("head."))
    with pytest.raises(ValueError, match="freeze pattern 'encoder.\\*' matches no parameter"):
        _finetune(toy, pretrained, tmp_path / "x", freeze=["encoder.*"])


def test_mlp_backbone_trains(toy, tmp_path):
    result = run(TrainConfig(source=toy[0], target=toy[1], image_size=16, steps=60, batch_size=32, lr=0.05,
                             backbone="mlp", backbone_kwargs={"hidden": [64]}, device="cpu", progress=False), tmp_path / "m")
    assert result["metrics"]["source_test/acc"] > 0.5


def test_frozen_batchnorm_keeps_its_running_statistics(tmp_path):
    src, tgt = write_toy_pair(tmp_path)
    common = dict(source=src, target=tgt, image_size=16, batch_size=32, device="cpu", progress=False,
                  backbone_kwargs={"batch_norm": True})
    run(TrainConfig(steps=20, **common), tmp_path / "pre")
    run(TrainConfig(method="target_oracle", steps=10, init_from=str(tmp_path / "pre"), freeze=["backbone.*"], **common),
        tmp_path / "head")
    before = load_trained_model(tmp_path / "pre")[0].state_dict()
    after = load_trained_model(tmp_path / "head")[0].state_dict()
    assert torch.equal(before["backbone.bn1.running_mean"], after["backbone.bn1.running_mean"])
    assert torch.equal(before["backbone.bn1.num_batches_tracked"], after["backbone.bn1.num_batches_tracked"])
