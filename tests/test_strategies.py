"""Transfer strategies (issue #7): blocks, strategies as config edits, frozen layers, gradual unfreezing,
discriminative learning rates, and exact resume in the middle of an unfreezing schedule."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from torch import nn
from toy import toy_domain, write_toy_pair

from domainadapt.methods import MethodContext, build_method
from domainadapt.models import build_model
from domainadapt.runs import load_trained_model, run
from domainadapt.strategies import (
    STRATEGIES,
    GradualUnfreezing,
    apply_strategy,
    block_parameter_names,
    model_blocks,
    param_lr_multipliers,
    split_blocks,
    strategy_label,
    strategy_overrides,
)
from domainadapt.train import ConfigError, TrainConfig, Trainer, load_checkpoint
from domainadapt.train.param_groups import build_param_groups
from domainadapt.train.step import set_train_mode

BN = {"batch_norm": True}
CONV1 = ["backbone.conv1", "backbone.bn1"]
CONV2 = ["backbone.conv2", "backbone.bn2"]
HEAD = ["head."]


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Tiny models: one thread each (see conftest.py)."""


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return write_toy_pair(tmp_path_factory.mktemp("toy"))


def _base(toy, **kw) -> TrainConfig:
    base = {"method": "target_oracle", "source": toy[0], "target": toy[1], "image_size": 16, "steps": 8,
            "batch_size": 32, "lr": 0.02, "device": "cpu", "progress": False, "backbone_kwargs": BN}
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def pretrained(toy, tmp_path_factory):
    out = tmp_path_factory.mktemp("pre") / "run"
    run(_base(toy, method="source_only", steps=15, lr=0.05), out)
    return out


class Encoder(nn.Module):
    """A generic model: the last child is the head; a layer stack gives a block per layer; an own parameter."""

    def __init__(self):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(4))
        self.embed = nn.Embedding(5, 4)
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList([nn.Linear(4, 4) for _ in range(3)])
        self.norm = nn.LayerNorm(4)
        self.classifier = nn.Linear(4, 2)


def _in(name: str, prefixes: list[str]) -> bool:
    return any(name.startswith(p) for p in prefixes)


# ------------------------------------------------------------------------------------------------ blocks
def test_model_blocks_of_the_backbones():
    names = lambda m: [b for b, _ in model_blocks(m)]
    assert model_blocks(build_model("digits_cnn", 10, 16, BN)) == [
        ("backbone.conv1", CONV1), ("backbone.conv2", CONV2),
        ("head.net.0", ["head.net.0"]), ("head.net.2", ["head.net.2"]), ("head.net.4", ["head.net.4"])]
    assert names(build_model("digits_cnn", 10, 16)) == ["backbone.conv1", "backbone.conv2", "head.net.0",
                                                        "head.net.2", "head.net.4"]
    assert names(build_model("mlp", 10, 16)) == ["backbone.net.1", "backbone.net.3", "head.net.0"]
    with torch.device("meta"):
        resnet = build_model("resnet18", 10, 32)
    assert model_blocks(resnet)[0] == ("backbone.net.conv1", ["backbone.net.conv1", "backbone.net.bn1"])  # the stem
    assert names(resnet)[1:] == [f"backbone.net.layer{i}" for i in range(1, 5)] + ["head.net.0"]

    assert model_blocks(Encoder()) == [("<own>", ["cls_token"]), ("embed", ["embed"]),
                                       ("encoder.layer.0", ["encoder.layer.0"]), ("encoder.layer.1", ["encoder.layer.1"]),
                                       ("encoder.layer.2", ["encoder.layer.2", "norm"]), ("classifier", ["classifier"])]
    transformers = pytest.importorskip("transformers")
    bert = transformers.BertForSequenceClassification(transformers.BertConfig(
        vocab_size=30, hidden_size=8, num_hidden_layers=2, num_attention_heads=2, intermediate_size=8, num_labels=3))
    assert names(bert) == ["bert.embeddings", "bert.encoder.layer.0", "bert.encoder.layer.1", "bert.pooler", "classifier"]
    assert [b for b, _ in split_blocks(bert)[1]] == ["classifier"]
    for model in (build_model("digits_cnn", 10, 16, BN), resnet, Encoder(), bert):  # every parameter in exactly one block
        flat = [n for _, block in block_parameter_names(model) for n in block]
        assert sorted(flat) == sorted(n for n, _ in model.named_parameters())


def test_layer_lr_decay_and_lr_mults_multiply():
    model = build_model("digits_cnn", 10, 16, BN)
    mults = param_lr_multipliers(model, {"head.net.4.*": 3.0, "*.bias": 0.5}, layer_lr_decay=0.5)
    assert mults["backbone.conv1.weight"] == 0.5**4 and mults["backbone.bn1.weight"] == 0.5**4
    assert mults["backbone.conv1.bias"] == 0.5**4 * 0.5
    assert mults["head.net.2.weight"] == 0.5
    assert mults["head.net.4.weight"] == 3.0 and mults["head.net.4.bias"] == 1.5
    with pytest.raises(ValueError, match="lr_mults pattern 'encoder.\\*' matches no parameter"):
        param_lr_multipliers(model, {"encoder.*": 2.0})
    with pytest.raises(ValueError, match="layer_lr_decay must be a finite number > 0"):
        param_lr_multipliers(model, layer_lr_decay=0.0)


# ------------------------------------------------------------------------------------------------ strategies as data
def test_strategies_are_config_edits(toy):
    cfg = _base(toy)
    over = {s: strategy_overrides(cfg, s, init_from="pre") for s in ("scratch", "feature_extraction", "full")}
    assert over["scratch"] == {"init_from": None, "layer_lr_decay": None, "unfreeze_every": 0}
    assert over["feature_extraction"] == {"init_from": "pre", "freeze": ["backbone.*"], "layer_lr_decay": None,
                                          "unfreeze_every": 0}
    assert over["full"]["freeze"] == [] and over["full"]["init_from"] == "pre"
    assert strategy_overrides(cfg, "partial", init_from="pre", blocks=1)["freeze"] == ["backbone.conv1.*",
                                                                                        "backbone.bn1.*"]
    assert strategy_overrides(cfg, "partial", init_from="pre", blocks=0)["freeze"] == [
        "backbone.conv1.*", "backbone.bn1.*", "backbone.conv2.*", "backbone.bn2.*"]
    gradual = strategy_overrides(cfg, "gradual+discriminative", init_from="pre")
    assert gradual["unfreeze_every"] == 8 // 3 and gradual["layer_lr_decay"] == pytest.approx(1 / 2.6)
    assert strategy_overrides(cfg, "gradual", init_from="pre", unfreeze_every=5)["unfreeze_every"] == 5
    json.dumps(gradual)  # plain data
    mlp = build_model("mlp", 10, 16)  # blocks of a given model (other tasks pass theirs)
    assert strategy_overrides(cfg, "partial", init_from="pre", blocks=1, model=mlp)["freeze"] == ["backbone.net.1.*"]
    encoder = Encoder()
    patterns = strategy_overrides(cfg, "feature_extraction", init_from="pre", model=encoder)["freeze"]
    assert patterns == ["cls_token", "embed.*", "encoder.layer.0.*", "encoder.layer.1.*", "encoder.layer.2.*", "norm.*"]
    from domainadapt.runs import freeze_parameters

    freeze_parameters(encoder, patterns)
    assert [n for n, p in encoder.named_parameters() if p.requires_grad] == ["classifier.weight", "classifier.bias"]
    for name in STRATEGIES:
        options = {"blocks": 1} if name == "partial" else {}
        new = apply_strategy(cfg, name, init_from="pre", **options)
        assert strategy_label(new) == name
    assert strategy_label(apply_strategy(cfg, "partial+gradual", init_from="pre", blocks=1)) == "partial+gradual"
    # a pretrained torchvision backbone is a source without init_from; scratch drops its weights
    res = TrainConfig(backbone="resnet18", backbone_kwargs={"weights": "DEFAULT"})
    assert strategy_overrides(res, "full")["init_from"] is None
    assert strategy_overrides(res, "scratch")["backbone_kwargs"] == {}


def test_bad_strategies_and_fields_fail_early(toy):
    cfg = _base(toy)
    with pytest.raises(ValueError, match="unknown transfer strategy 'fine'"):
        strategy_overrides(cfg, "fine", init_from="pre")
    with pytest.raises(ValueError, match="takes no option 'blocks'"):
        strategy_overrides(cfg, "full", init_from="pre", blocks=1)
    with pytest.raises(ValueError, match=r"blocks must be an integer in \[0, 2\]"):
        strategy_overrides(cfg, "partial", init_from="pre", blocks=3)
    with pytest.raises(ValueError, match="needs blocks=k"):
        strategy_overrides(cfg, "partial", init_from="pre")
    with pytest.raises(ValueError, match="give init_from"):
        strategy_overrides(cfg, "full")
    with pytest.raises(ValueError, match="combines"):
        strategy_overrides(cfg, "feature_extraction+full", init_from="pre")
    with pytest.raises(ValueError, match="'scratch' .* takes no modifier"):
        strategy_overrides(cfg, "scratch+gradual")
    with pytest.raises(ConfigError, match="lr_mults\\['head.\\*'\\] must be a finite number > 0"):
        _base(toy, lr_mults={"head.*": 0.0}).validate()
    with pytest.raises(ConfigError, match="layer_lr_decay must be a finite number > 0"):
        _base(toy, layer_lr_decay=-0.5).validate()
    with pytest.raises(ConfigError, match="unfreeze_every must be an integer >= 0"):
        _base(toy, unfreeze_every=-1).validate()


def test_new_fields_leave_existing_run_keys_unchanged():
    assert TrainConfig().key_dict() == {}
    assert TrainConfig().config_hash() == hashlib.sha256(b"{}").hexdigest()[:12]
    assert TrainConfig(steps=5).config_hash() == hashlib.sha256(b'{"steps": 5}').hexdigest()[:12]
    assert TrainConfig(unfreeze_every=3).key_dict() == {"unfreeze_every": 3}


# ------------------------------------------------------------------------------------------------ training
def test_frozen_layers_stay_bitwise_unchanged(toy, pretrained, tmp_path):
    before = load_trained_model(pretrained)[0].state_dict()
    for name, options, frozen in [("feature_extraction", {}, CONV1 + CONV2), ("partial", {"blocks": 1}, CONV1)]:
        run(apply_strategy(_base(toy), name, init_from=str(pretrained), **options), tmp_path / name)
        after = load_trained_model(tmp_path / name)[0].state_dict()
        for k in before:  # weights and BatchNorm running statistics of frozen blocks: bitwise equal
            assert torch.equal(after[k], before[k]) == _in(k, frozen), (name, k)


def _trainer(toy_sets, tmp_path, **kw) -> Trainer:
    from domainadapt.runs import freeze_parameters
    from domainadapt.seeding import seed_everything

    config = TrainConfig(method="target_oracle", image_size=16, batch_size=32, lr=0.02, device="cpu",
                         progress=False, **kw)
    seed_everything(0)
    model = build_model("digits_cnn", 10, 16, BN)
    freeze_parameters(model, config.freeze)
    method = build_method(config.method, MethodContext(model.feature_dim, 10, config.steps))
    return Trainer(config, model, method, source_train=toy_sets[0], target_train=toy_sets[1], eval_sets={},
                   run_dir=tmp_path)


@pytest.fixture(scope="module")
def toy_sets():
    return toy_domain(160, seed=0), toy_domain(160, seed=1, invert=True)


def _changed_blocks(trainer: Trainer, steps: int) -> list[tuple[set[str], dict[str, bool]]]:
    """Per step: which blocks' parameters changed, and which BatchNorms were in train mode during the step."""
    set_train_mode(trainer.step_module)
    out = []
    for _ in range(steps):
        old = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        trainer.train_step()
        new = trainer.model.state_dict()
        changed = {b for b, names in block_parameter_names(trainer.model) for n in names if not torch.equal(old[n], new[n])}
        modes = {"bn1": trainer.model.backbone.bn1.training, "bn2": trainer.model.backbone.bn2.training}
        assert torch.equal(old["backbone.bn1.running_mean"], new["backbone.bn1.running_mean"]) != modes["bn1"]
        out.append((changed, modes))
    return out


def test_gradual_unfreezing_unfreezes_on_schedule(toy_sets, tmp_path):
    head = {"head.net.0", "head.net.2", "head.net.4"}
    trainer = _trainer(toy_sets, tmp_path, steps=7, unfreeze_every=2)
    history = _changed_blocks(trainer, 7)
    expected = [head] * 2 + [head | {"backbone.conv2"}] * 2 + [head | {"backbone.conv2", "backbone.conv1"}] * 3
    assert [c for c, _ in history] == expected
    assert [m for _, m in history] == [{"bn1": False, "bn2": False}] * 2 + [{"bn1": False, "bn2": True}] * 2 + \
        [{"bn1": True, "bn2": True}] * 3
    assert all(p.requires_grad for p in trainer.model.parameters())
    schedule = GradualUnfreezing(trainer.model, 2)
    assert schedule.trainable_blocks(0) == sorted(head) and schedule.trainable_blocks(9)[-1] == "backbone.conv1"

    # composes with config.freeze: conv1 stays frozen (and out of the optimizer) through every stage
    trainer = _trainer(toy_sets, tmp_path / "f", steps=5, unfreeze_every=2, freeze=["backbone.conv1.*", "backbone.bn1.*"])
    history = _changed_blocks(trainer, 5)
    assert [c for c, _ in history] == [head] * 2 + [head | {"backbone.conv2"}] * 3
    assert not trainer.model.backbone.conv1.weight.requires_grad


def test_discriminative_learning_rates_reach_the_optimizer(toy_sets, tmp_path):
    trainer = _trainer(toy_sets, tmp_path, steps=2, layer_lr_decay=0.5, lr_mults={"head.net.4.*": 3.0},
                       freeze=["backbone.conv1.*"])
    groups = trainer.optimizer.param_groups
    assert [g["name"] for g in groups] == ["model@0.0625", "model@0.125", "model@0.25", "model@0.5", "model@3"]
    by_id = {id(p): g for g in groups for p in g["params"]}
    for i, (block, names) in enumerate(block_parameter_names(trainer.model)):
        for n in names:
            p = trainer.model.get_parameter(n)
            if n.startswith("backbone.conv1."):
                assert id(p) not in by_id  # frozen by config.freeze: not in the optimizer
                continue
            expected = 0.02 * 0.5 ** (4 - i) * (3.0 if block == "head.net.4" else 1.0)
            assert by_id[id(p)]["lr"] == expected, n
    trainer.train_step()  # a constant schedule keeps every group at its lr
    assert [g["lr"] for g in trainer.optimizer.param_groups] == [0.02 * m for m in (0.0625, 0.125, 0.25, 0.5, 3.0)]
    # defaults: one "model" group exactly as before
    model = build_model("digits_cnn", 10, 16)
    method = build_method("dann", MethodContext(model.feature_dim, 10, 5))
    assert [g["name"] for g in build_param_groups(model, method, 0.1)] == ["model", "method"]


class _Stop(Exception):
    pass


def test_resume_mid_schedule_equals_uninterrupted_run(toy, pretrained, tmp_path, monkeypatch):
    cfg = apply_strategy(_base(toy, steps=6, deterministic=True, checkpoint_every=3), "gradual+discriminative",
                         init_from=str(pretrained), unfreeze_every=2, decay=0.5)
    reference = run(cfg, tmp_path / "reference")

    original = Trainer.train_step

    def stop_at_3(self):
        if self.step == 3:  # after the step-3 checkpoint, in stage 1 (conv2 open, conv1 still frozen)
            raise _Stop
        original(self)

    monkeypatch.setattr(Trainer, "train_step", stop_at_3)
    with pytest.raises(_Stop):
        run(cfg, tmp_path / "killed")
    assert load_checkpoint(tmp_path / "killed" / "checkpoints" / "last.pt")["step"] == 3
    monkeypatch.setattr(Trainer, "train_step", original)
    resumed = run(cfg, tmp_path / "killed")

    a = load_checkpoint(tmp_path / "killed" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "reference" / "checkpoints" / "last.pt")
    for k in b["modules"]:
        assert torch.equal(a["modules"][k], b["modules"][k]), k
    assert [g["name"] for g in a["optimizer"]["param_groups"]] == [g["name"] for g in b["optimizer"]["param_groups"]]
    assert [g["lr"] for g in b["optimizer"]["param_groups"]] == [0.02 * 0.5**d for d in (4, 3, 2, 1, 0)]
    assert resumed["metrics"] == reference["metrics"]
    pre = load_trained_model(pretrained)[0].state_dict()
    assert not torch.equal(b["modules"]["model.backbone.conv1.weight"], pre["backbone.conv1.weight"])  # unfroze at 4


def test_a_pretrained_timm_backbone_needs_no_init_from_and_scratch_drops_its_weights():
    pytest.importorskip("timm")
    from domainadapt.strategies import apply_strategy, pretrained_options, strategy_label

    config = TrainConfig(backbone="timm:resnet18", backbone_kwargs={"pretrained": True, "bottleneck": 64},
                         image_size=32, steps=40)
    assert pretrained_options(config) == ["pretrained"] and strategy_label(config) != "scratch"
    tuned = apply_strategy(config, "feature_extraction")
    assert tuned.init_from is None and "backbone.*" in tuned.freeze
    scratch = apply_strategy(config, "scratch")
    assert scratch.backbone_kwargs == {"bottleneck": 64} and strategy_label(scratch) == "scratch"
    with pytest.raises(ValueError, match="pretrained for timm:NAME"):
        apply_strategy(TrainConfig(backbone="timm:resnet18", backbone_kwargs={"pretrained": False}), "full")
