"""Any torchvision model by name, any timm model as timm:NAME, and the UDA bottleneck option (random weights only:
nothing is downloaded; 32-px images)."""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys

import pytest
import torch

from domainadapt.models import BackboneError, build_model
from domainadapt.models.blocks import block_parameter_names, model_blocks
from domainadapt.models.registry import check_image_backbone, get_backbone
from domainadapt.runs import check_inputs, run
from domainadapt.train.config import TrainConfig
from domainadapt.train.logging import read_metrics
from toy import toy_domain

needs_timm = pytest.mark.skipif(importlib.util.find_spec("timm") is None, reason="timm not installed")


def _params_in_one_block_each(model: torch.nn.Module) -> None:
    flat = [n for _, block in block_parameter_names(model) for n in block]
    assert sorted(flat) == sorted(n for n, _ in model.named_parameters())


@pytest.fixture(scope="module")
def toy32(tmp_path_factory):
    """Two 32-px toy domains (10 classes), written as file: domains."""
    folder = tmp_path_factory.mktemp("toy32")
    src, tgt = folder / "src.pt", folder / "tgt.pt"
    toy_domain(60, image_size=32, seed=0, name="toy_source").save(src)
    toy_domain(60, image_size=32, seed=1, invert=True, name="toy_target").save(tgt)
    return f"file:{src}", f"file:{tgt}"


@pytest.mark.parametrize("backbone, kwargs", [
    ("mobilenet_v3_small", {"weights": None}),
    pytest.param("timm:resnet18", {"pretrained": False, "bottleneck": 256}, marks=needs_timm)])
def test_torchvision_and_timm_backbones_train_through_run(toy32, tmp_path, one_torch_thread, backbone, kwargs):
    source, target = toy32
    config = TrainConfig(backbone=backbone, backbone_kwargs=kwargs, source=source, target=target, image_size=32,
                         steps=5, batch_size=8, device="cpu", progress=False, log_every=1)
    result = run(config, tmp_path / "run")
    losses = [r["train/total"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "train/total" in r]
    assert len(losses) == 5 and all(math.isfinite(v) for v in losses)
    acc = result["metrics"]["source_test/acc"]
    assert isinstance(acc, float) and 0.0 <= acc <= 1.0


def test_unknown_names_fail_in_check_inputs_with_one_clear_line(monkeypatch):
    with pytest.raises(BackboneError, match=r"unknown backbone 'nope': not a registered backbone .*not a torchvision "
                                            r"model \(see torchvision.models.list_models\(\)\), not timm:NAME"):
        check_inputs(TrainConfig(backbone="nope"))
    with pytest.raises(BackboneError, match=r"unknown weights 'IMAGENET'; choose one of \['IMAGENET1K_V1', 'DEFAULT'\]"):
        check_inputs(TrainConfig(backbone="mobilenet_v3_small", backbone_kwargs={"weights": "IMAGENET"}))
    with pytest.raises(BackboneError, match=r"does not take option\(s\) \['pretrained'\]; it takes \['bottleneck', "
                                            r"'model_kwargs', 'weights'\]"):
        check_inputs(TrainConfig(backbone="mobilenet_v3_small", backbone_kwargs={"pretrained": True}))
    with pytest.raises(BackboneError, match=r"option 'bottleneck' must be a width"):
        check_inputs(TrainConfig(backbone="mobilenet_v3_small", backbone_kwargs={"bottleneck": "256"}))
    monkeypatch.setitem(sys.modules, "timm", None)  # as if timm were not installed
    with pytest.raises(BackboneError, match=r"backbone 'timm:resnet18' needs timm: pip install timm"):
        check_inputs(TrainConfig(backbone="timm:resnet18"))


@needs_timm
def test_an_unknown_timm_name_names_close_timm_models():
    with pytest.raises(BackboneError, match=r"unknown timm model 'resnet_18'.*similar: \[.*'resnet18'"):
        check_inputs(TrainConfig(backbone="timm:resnet_18"))


@needs_timm
def test_a_vit_takes_the_image_size_it_was_built_for():
    vit = build_model("timm:vit_tiny_patch16_224", 10, 32)  # img_size=32 is passed to timm: 2×2 patches of 16 px
    assert vit.feature_dim == 192 and vit.backbone.net.patch_embed.img_size == (32, 32)
    assert vit.backbone.mean.flatten().tolist() == [0.5, 0.5, 0.5]  # timm's pretrained config, not ImageNet's
    f, logits = vit.features_and_logits(torch.rand(2, 3, 32, 32))
    assert f.shape == (2, 192) and logits.shape == (2, 10) and torch.isfinite(logits).all()
    assert build_model("timm:vit_tiny_patch16_224", 10, 32, {"bottleneck": 256}).feature_dim == 256


def test_a_torchvision_vit_takes_the_image_size_it_was_built_for():
    with torch.device("meta"):  # without weights, built at image_size
        assert build_model("vit_b_16", 10, 32).backbone.net.image_size == 32
    with pytest.raises(BackboneError, match=r"'vit_b_16' with weights 'IMAGENET1K_V1' takes 224-px images, not "
                                            r"image_size 32: set image_size 224"):
        check_image_backbone("vit_b_16", {"weights": "DEFAULT"}, image_size=32)


@needs_timm
def test_the_bottleneck_is_the_feature_the_methods_align():
    model = build_model("timm:resnet18", 10, 32, {"bottleneck": 256})
    assert model.feature_dim == 256 and get_backbone("timm:resnet18").feature_dim(32, bottleneck=256) == 256
    layers = model.backbone.bottleneck  # fc 256 → BatchNorm1d → ReLU (CDAN / TLlib)
    assert [type(m).__name__ for m in layers] == ["Linear", "BatchNorm1d", "ReLU"] and layers[0].in_features == 512
    f, logits = model.features_and_logits(torch.rand(4, 3, 32, 32))
    assert f.shape == (4, 256) and (f >= 0).all() and logits.shape == (4, 10)
    assert model.head.net[0].in_features == 256
    assert build_model("digits_cnn", 10, 32, {"bottleneck": 0}).feature_dim == 1200  # 0: off
    assert build_model("digits_cnn", 10, 32, {"bottleneck": 64}).feature_dim == 64  # any image backbone


@pytest.mark.parametrize("backbone, width", [
    pytest.param("timm:convnext_atto", 320, marks=needs_timm),
    pytest.param("timm:mobilenetv3_small_050", 1024, marks=needs_timm),  # head_hidden_size, not num_features (288)
    pytest.param("timm:efficientnet_b0", 1280, marks=needs_timm),
    ("efficientnet_b0", 1280), ("convnext_tiny", 768), ("squeezenet1_0", 512)])
def test_feature_width_is_what_the_network_returns(backbone, width):
    with torch.device("meta"):  # shapes only: no weights allocated
        model = build_model(backbone, 10, 32)
        f = model.backbone(torch.empty(2, 3, 32, 32))
    assert model.feature_dim == width and f.shape == (2, width)


@needs_timm
def test_blocks_of_mobilenet_and_a_timm_resnet():
    names = lambda m: [b for b, _ in model_blocks(m)]
    with torch.device("meta"):  # on the meta device weights are never downloaded
        mobilenet = build_model("mobilenet_v3_small", 10, 32, {"weights": "DEFAULT"})
        resnet = build_model("timm:resnet18", 10, 32, {"pretrained": True})
        tuned = build_model("mobilenet_v3_small", 10, 32, {"bottleneck": 256})
    assert names(mobilenet) == [f"backbone.net.features.{i}" for i in range(13)] + ["backbone.net.classifier",
                                                                                   "head.net.0"]
    assert model_blocks(resnet)[0] == ("backbone.net.conv1", ["backbone.net.conv1", "backbone.net.bn1"])  # the stem
    assert names(resnet)[1:] == [f"backbone.net.layer{i}" for i in range(1, 5)] + ["head.net.0"]
    assert names(tuned) == [f"backbone.extractor.net.features.{i}" for i in range(13)] + [
        "backbone.extractor.net.classifier", "backbone.bottleneck", "head.net.0"]  # the bottleneck: one more top block
    for model in (mobilenet, resnet, tuned):
        _params_in_one_block_each(model)


def test_weights_keep_their_torchvision_keys():
    import torchvision

    with torch.device("meta"):
        ours = build_model("mobilenet_v3_small", 10, 32).backbone.net.state_dict()
        theirs = torchvision.models.mobilenet_v3_small().state_dict()
    assert sorted(ours) == sorted(k for k in theirs if not k.startswith("classifier.3."))


def test_looking_up_a_name_imports_neither_timm_nor_torchvision():
    code = ("import sys; from domainadapt.models.registry import backbone_modality as m; "
            "assert (m('digits_cnn'), m('timm:resnet18'), m('bert-base-uncased')) == ('image', 'image', 'text'); "
            "print(sorted({'timm', 'torchvision'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
