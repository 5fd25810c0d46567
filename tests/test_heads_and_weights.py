"""Issue #16, your own data and models: the classifier head as backbone options (every image backbone), pretrained
weights from a local file, one clear error for named weights that are neither cached nor downloadable (offline:
a temporary torch hub dir and a download that raises URLError), and the fine-tuning recipe as one config."""

from __future__ import annotations

import importlib.util
import urllib.error
import warnings

import pytest
import torch
from toy import toy_domain

from domainadapt.methods import MethodContext, build_method
from domainadapt.models import BackboneError, build_model
from domainadapt.models import weights as weights_module
from domainadapt.models.blocks import block_parameter_names, freeze_patterns, model_blocks, split_blocks
from domainadapt.models.registry import check_image_backbone
from domainadapt.runs import check_inputs, freeze_parameters
from domainadapt.seeding import seed_everything
from domainadapt.train import TrainConfig, Trainer
from domainadapt.train.step import set_train_mode

needs_timm = pytest.mark.skipif(importlib.util.find_spec("timm") is None, reason="timm not installed")
TUTORIAL_HEAD = {"head_hidden": [256], "head_activation": "relu", "head_dropout": 0.4}


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Small models on shared CPUs: one thread each (see conftest.py)."""


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """An empty torch hub dir and no network: a probe or a download raises URLError."""
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no network (test)")

    monkeypatch.setattr(weights_module, "probe_download", no_network)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    weights_module._REACHABLE.clear()
    return tmp_path / "hub"


def _params_in_one_block_each(model: torch.nn.Module) -> None:
    flat = [n for _, block in block_parameter_names(model) for n in block]
    assert sorted(flat) == sorted(n for n, _ in model.named_parameters())


# ------------------------------------------------------------------------------------------------------ heads
def test_the_tutorial_head_is_three_backbone_options():
    with torch.device("meta"):
        model = build_model("resnet50", 7, 32, TUTORIAL_HEAD)
    layers = list(model.head.net)
    assert [type(m).__name__ for m in layers] == ["Linear", "ReLU", "Dropout", "Linear"]
    assert (layers[0].in_features, layers[0].out_features, layers[3].out_features) == (2048, 256, 7)
    assert layers[2].p == 0.4 and model.feature_dim == 2048
    names = [b for b, _ in model_blocks(model)]
    assert names == ["backbone.net.conv1"] + [f"backbone.net.layer{i}" for i in range(1, 5)] + ["head.net.0",
                                                                                               "head.net.3"]
    assert [b for b, _ in split_blocks(model)[1]] == ["head.net.0", "head.net.3"]  # each Linear a head block
    _params_in_one_block_each(model)


@pytest.mark.parametrize("activation, cls", [("gelu", "GELU"), ("tanh", "Tanh"), ("leaky_relu", "LeakyReLU")])
def test_every_image_backbone_takes_the_head_options(activation, cls):
    options = {"head_hidden": [32, 16], "head_activation": activation}
    with torch.device("meta"):
        for backbone in ("digits_cnn", "mlp", "mobilenet_v3_small", "resnet18"):
            model = build_model(backbone, 3, 32, {**options, "bottleneck": 64} if backbone == "mlp" else options)
            assert [type(m).__name__ for m in model.head.net] == ["Linear", cls, "Linear", cls, "Linear"], backbone
            assert [b for b, _ in split_blocks(model)[1]] == ["head.net.0", "head.net.2", "head.net.4"]
            _params_in_one_block_each(model)
    linear = build_model("digits_cnn", 10, 32, {"head_hidden": []}).head.net  # []: one linear layer
    assert len(linear) == 1 and linear[0].in_features == 1200


def test_absent_head_options_build_the_same_model_bit_for_bit():
    seed_everything(0)
    default = build_model("digits_cnn", 10, 16)
    seed_everything(0)
    spelled = build_model("digits_cnn", 10, 16, {"head_hidden": [100, 100], "head_activation": "relu",
                                                 "head_dropout": 0})
    assert list(default.state_dict()) == list(spelled.state_dict())
    assert list(default.head.state_dict()) == [f"net.{i}.{p}" for i in (0, 2, 4) for p in ("weight", "bias")]
    assert all(torch.equal(v, spelled.state_dict()[k]) for k, v in default.state_dict().items())
    with torch.device("meta"):
        assert list(build_model("resnet18", 10, 32).head.state_dict()) == ["net.0.weight", "net.0.bias"]


@pytest.mark.parametrize("options, message", [
    ({"head_hidden": 256}, r"option 'head_hidden' must be a list of positive widths \(e.g. \[256\]; \[\]: one "
                           r"linear layer\), got 256"),
    ({"head_hidden": [256, 0]}, r"option 'head_hidden' must be a list of positive widths"),
    ({"head_hidden": [True]}, r"option 'head_hidden' must be a list of positive widths"),
    ({"head_hidden": [256], "head_activation": "swish"},
     r"option 'head_activation' must be one of \['relu', 'gelu', 'tanh', 'leaky_relu'\], got 'swish'"),
    ({"head_hidden": [256], "head_dropout": 1.0}, r"option 'head_dropout' must be a probability in \[0, 1\), got 1.0"),
    ({"head_hidden": [256], "head_dropout": "0.4"}, r"option 'head_dropout' must be a probability"),
    ({"head_dropout": 0.4}, r"option 'head_dropout' acts on the head's hidden layers and this head has none: give "
                            r"head_hidden too"),
    ({"head_activation": "gelu"}, r"option 'head_activation' acts on the head's hidden layers"),
    ({"head_width": 3}, r"does not take option\(s\) \['head_width'\]; it takes \['bottleneck', 'weights'\] and the "
                        r"head options \['head_hidden', 'head_activation', 'head_dropout'\]"),
])
def test_bad_head_options_fail_in_check_inputs_naming_the_option(options, message):
    with pytest.raises(BackboneError, match=r"^backbone 'resnet18'.*" + message):
        check_inputs(TrainConfig(backbone="resnet18", backbone_kwargs=options))


# ------------------------------------------------------------------------------------------- weights from a file
def _resnet18_state(num_classes: int = 31) -> dict[str, torch.Tensor]:
    import torchvision

    torch.manual_seed(1)
    return torchvision.models.resnet18(num_classes=num_classes).state_dict()


def test_a_checkpoint_file_loads_into_a_resnet_and_its_classifier_is_dropped(tmp_path):
    state = _resnet18_state()
    path = tmp_path / "checkpoint.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)  # DDP checkpoint
    check_inputs(TrainConfig(backbone="resnet18", backbone_kwargs={"weights": str(path)}))
    with pytest.warns(UserWarning, match=r"classifier of .*checkpoint.pth is not loaded .*fc.weight \[31, 512\], "
                                         r"fc.bias \[31\]"):
        model = build_model("resnet18", 5, 32, {"weights": str(path), **TUTORIAL_HEAD})
    loaded = model.backbone.net.state_dict()
    assert all(torch.equal(loaded[k], state[k]) for k in loaded)
    assert model.head.net[3].out_features == 5

    tllib = tmp_path / "tllib.pth"  # TLlib's ImageClassifier: backbone.*, bottleneck.*, head.*
    torch.save({"model": {**{f"backbone.{k}": v for k, v in state.items() if not k.startswith("fc.")},
                          "bottleneck.0.weight": torch.zeros(256, 512), "head.weight": torch.zeros(31, 256)}}, tllib)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_model("resnet18", 5, 32, {"weights": str(tllib)})
    assert torch.equal(model.backbone.net.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])


def test_a_file_for_another_network_fails_listing_the_keys(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(_resnet18_state(), path)
    with pytest.raises(BackboneError, match=r"^backbone 'resnet34': option 'weights': .*r18.pth does not fit the "
                                            r"network \(ResNet\): 80 missing keys \['layer1.2.conv1.weight'.* and 74 "
                                            r"more$"):
        build_model("resnet34", 5, 32, {"weights": str(path)})
    shapes = {k: (v[:, :1] if k == "conv1.weight" else v) for k, v in _resnet18_state().items()}
    torch.save(shapes, path)
    with pytest.raises(BackboneError, match=r"1 of another shape \(file vs model\) \['conv1.weight \(64, 1, 7, 7\) "
                                            r"vs \(64, 3, 7, 7\)'\]"):
        build_model("resnet18", 5, 32, {"weights": str(path)})
    torch.save({**_resnet18_state(), "extra.weight": torch.zeros(1)}, path)
    with pytest.raises(BackboneError, match=r"1 unexpected keys \['extra.weight'\]"):
        build_model("resnet18", 5, 32, {"weights": str(path)})


def test_a_missing_or_pickled_file_fails_in_one_line(tmp_path):
    with pytest.raises(BackboneError, match=r"^backbone 'resnet18': option 'weights': no weights file at .*nope.pth$"):
        check_inputs(TrainConfig(backbone="resnet18", backbone_kwargs={"weights": str(tmp_path / "nope.pth")}))
    with pytest.raises(BackboneError, match=r"^backbone 'mobilenet_v3_small': option 'weights': no weights file"):
        check_image_backbone("mobilenet_v3_small", {"weights": str(tmp_path / "nope.pth")})
    pickled = tmp_path / "model.pth"
    torch.save(torch.nn.Linear(2, 2), pickled)
    with pytest.raises(BackboneError, match=r"cannot be read as weights with torch.load\(weights_only=True\) \(it "
                                            r"holds pickled objects, not only tensors\); save a state dict"):
        build_model("resnet18", 5, 32, {"weights": str(pickled)})
    empty = tmp_path / "empty.pth"
    torch.save({"epoch": 1}, empty)
    with pytest.raises(BackboneError, match=r"holds no state dict \(found \['epoch'\]\)"):
        build_model("resnet18", 5, 32, {"weights": str(empty)})


def test_a_file_loads_into_any_torchvision_model_keeping_its_inner_classifier_layers(tmp_path):
    import torchvision

    net = torchvision.models.mobilenet_v3_small(num_classes=7)
    path = tmp_path / "mobilenet.pth"
    torch.save({"model": net.state_dict()}, path)  # torchvision's reference scripts
    with pytest.warns(UserWarning, match=r"classifier.3.weight \[7, 1024\]"):
        model = build_model("mobilenet_v3_small", 5, 32, {"weights": str(path)})
    ours = model.backbone.net.state_dict()
    assert "classifier.0.weight" in ours and torch.equal(ours["classifier.0.weight"], net.classifier[0].weight)


# --------------------------------------------------------------------------------- named weights, offline
def test_named_weights_not_cached_fail_in_the_check_with_the_url_and_the_path(offline):
    for backbone, url_file in (("resnet50", "resnet50-11ad3fa6.pth"), ("mobilenet_v3_small",
                                                                      "mobilenet_v3_small-047dcff4.pth")):
        config = TrainConfig(backbone=backbone, backbone_kwargs={"weights": "DEFAULT"})
        with pytest.raises(BackboneError) as info:
            check_inputs(config)
        text = str(info.value)
        assert "\n" not in text and "Traceback" not in text
        assert text.startswith(f"backbone '{backbone}': weights '")
        assert f"are not in the local cache and cannot be downloaded (no network (test)): download " \
               f"https://download.pytorch.org/models/{url_file} to {offline / 'checkpoints' / url_file} (or pass " \
               f"weights=/path/to/file.pth)" in text
        with weights_module.weights_not_required():  # planning runs (a dry run): names checked, not the cache
            check_inputs(config)
        with pytest.raises(BackboneError, match=r"unknown weights 'IMAGENET'"), weights_module.weights_not_required():
            check_inputs(TrainConfig(backbone=backbone, backbone_kwargs={"weights": "IMAGENET"}))


def test_cached_weights_pass_the_check_without_the_network(offline, monkeypatch):
    (offline / "checkpoints").mkdir(parents=True)
    (offline / "checkpoints" / "resnet18-f37072fd.pth").write_bytes(b"")  # only its presence is checked

    def fail(*args, **kwargs):
        raise AssertionError("the check went to the network")

    monkeypatch.setattr(weights_module, "probe_download", fail)
    check_inputs(TrainConfig(backbone="resnet18", backbone_kwargs={"weights": "IMAGENET1K_V1"}))
    monkeypatch.setattr(weights_module, "probe_download", lambda url, timeout=5.0: None)  # online, not cached
    check_inputs(TrainConfig(backbone="resnet34", backbone_kwargs={"weights": "DEFAULT"}))


def test_a_download_that_fails_in_the_build_is_the_same_one_line(offline, monkeypatch):
    monkeypatch.setattr(weights_module, "probe_download", lambda url, timeout=5.0: None)  # the check passes
    with pytest.raises(BackboneError, match=r"^backbone 'resnet18': weights 'ResNet18_Weights.IMAGENET1K_V1' are not "
                                            r"in the local cache and cannot be downloaded \(no network \(test\)\): download "
                                            r"https://download.pytorch.org/models/resnet18-f37072fd.pth to "):
        build_model("resnet18", 5, 32, {"weights": "DEFAULT"})
    with pytest.raises(BackboneError, match=r"^backbone 'squeezenet1_0': weights .* cannot be downloaded"):
        build_model("squeezenet1_0", 5, 32, {"weights": "DEFAULT"})


# ------------------------------------------------------------------------------------------------------ timm
@needs_timm
def test_timm_takes_a_weights_file(tmp_path):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(2)
    net = timm.create_model("resnet18", num_classes=10)
    state = net.state_dict()
    save_file(state, str(tmp_path / "model.safetensors"))
    torch.save({"state_dict": state}, tmp_path / "model.pth")
    for name in ("model.safetensors", "model.pth"):
        path = str(tmp_path / name)
        check_inputs(TrainConfig(backbone="timm:resnet18", backbone_kwargs={"pretrained": path}))
        with pytest.warns(UserWarning, match=r"fc.weight \[10, 512\]"):
            model = build_model("timm:resnet18", 3, 32, {"pretrained": path})
        assert torch.equal(model.backbone.net.layer3[0].conv1.weight, state["layer3.0.conv1.weight"])
    with pytest.raises(BackboneError, match=r"^backbone 'timm:resnet18': option 'pretrained' must be true, false or "
                                            r"a weights file path \(e.g. /path/to/model.safetensors\), got 'yes'$"):
        check_inputs(TrainConfig(backbone="timm:resnet18", backbone_kwargs={"pretrained": "yes"}))
    with pytest.raises(BackboneError, match=r"option 'model_kwargs.pretrained_cfg_overlay.file': no weights file"):
        check_inputs(TrainConfig(backbone="timm:resnet18", backbone_kwargs={
            "pretrained": True, "model_kwargs": {"pretrained_cfg_overlay": {"file": str(tmp_path / "none.pth")}}}))


@needs_timm
def test_timm_weights_not_in_the_hub_cache_fail_in_the_check(offline, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(BackboneError) as info:
        check_inputs(TrainConfig(backbone="timm:resnet18", backbone_kwargs={"pretrained": True}))
    assert str(info.value) == (
        "backbone 'timm:resnet18': weights 'timm/resnet18.a1_in1k' are not in the Hugging Face cache and cannot be "
        "downloaded (no network (test)): download https://huggingface.co/timm/resnet18.a1_in1k/resolve/main/"
        "model.safetensors and pass pretrained=/path/to/model.safetensors (or fill the cache where there is "
        "internet: huggingface-cli download timm/resnet18.a1_in1k)")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BackboneError, match=r"cannot be downloaded \(HF_HUB_OFFLINE is set\)"):
        check_image_backbone("timm:resnet18", {"pretrained": True})


# ------------------------------------------------------------------------------------------ the tutorial recipe
@pytest.fixture(scope="module")
def toy32():
    return toy_domain(40, image_size=32, seed=0), toy_domain(40, image_size=32, seed=1, invert=True)


def _recipe_trainer(toy32, tmp_path, **kw) -> Trainer:
    """ResNet-50 (random weights), the custom head, everything below layer4 frozen; head at lr 1e-3, layer4 at 1e-4."""
    options = {"weights": None, **TUTORIAL_HEAD}
    with torch.device("meta"):
        blocks = split_blocks(build_model("resnet50", 10, 32, options))[0]
    frozen = freeze_patterns([b for b in blocks if b[0] != "backbone.net.layer4"])
    config = TrainConfig(backbone="resnet50", backbone_kwargs=options, image_size=32, batch_size=8, steps=3,
                         optimizer="sgd", lr=1e-3, lr_mults={"backbone.net.layer4.*": 0.1}, freeze=frozen,
                         device="cpu", progress=False, **kw)
    seed_everything(0)
    model = build_model("resnet50", 10, 32, options)
    freeze_parameters(model, config.freeze)
    method = build_method(config.method, MethodContext(model.feature_dim, 10, config.steps))
    return Trainer(config, model, method, source_train=toy32[0], target_train=toy32[1], eval_sets={},
                   run_dir=tmp_path)


def _train(trainer: Trainer, steps: int) -> list[set[str]]:
    """Per step, the blocks whose parameters changed."""
    set_train_mode(trainer.step_module)
    out = []
    for _ in range(steps):
        old = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
        trainer.train_step()
        out.append({b for b, names in block_parameter_names(trainer.model) for n in names
                    if not torch.equal(old[n], trainer.model.get_parameter(n))})
    return out


def test_the_tutorial_recipe_trains_the_head_at_1e3_and_layer4_at_1e4(toy32, tmp_path):
    trainer = _recipe_trainer(toy32, tmp_path)
    model = trainer.model
    head = {id(p) for p in model.head.parameters()}
    layer4 = {id(p) for p in model.backbone.net.layer4.parameters()}
    groups = sorted((g["lr"], {id(p) for p in g["params"]}) for g in trainer.optimizer.param_groups)
    assert [lr for lr, _ in groups] == pytest.approx([1e-4, 1e-3])
    assert groups[0][1] == layer4 and groups[1][1] == head  # exactly those, nothing frozen in the optimizer
    assert all(p.requires_grad == (id(p) in head | layer4) for p in model.parameters())
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    changed = _train(trainer, 3)
    assert changed == [{"backbone.net.layer4", "head.net.0", "head.net.3"}] * 3
    for n, p in model.named_parameters():  # the frozen layers: bitwise unchanged
        assert torch.equal(p, before[n]) == (id(p) not in head | layer4), n
    assert sorted(g["lr"] for g in trainer.optimizer.param_groups) == [pytest.approx(1e-4), 1e-3]  # constant
    # the lr log (metrics.jsonl): of the backbone only layer4 is in the optimizer, so its group is "backbone"
    assert trainer.learning_rates() == {"lr": 1e-3, "lr/backbone": pytest.approx(1e-4), "lr/head": 1e-3}


def test_the_tutorial_recipe_with_gradual_unfreezing(toy32, tmp_path):
    trainer = _recipe_trainer(toy32, tmp_path, unfreeze_every=2)
    changed = _train(trainer, 4)
    head = {"head.net.0", "head.net.3"}
    assert changed == [head, head, head | {"backbone.net.layer4"}, head | {"backbone.net.layer4"}]  # layer3 stays
    assert not trainer.model.backbone.net.layer3[0].conv1.weight.requires_grad
