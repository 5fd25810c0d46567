"""Per-layer feature extraction with forward hooks (domainadapt.divergence.features)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from domainadapt.inference import UnknownLayerError, extract_features


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential()
        self.backbone.add_module("conv1", nn.Conv2d(1, 4, 3))
        self.backbone.add_module("bn", nn.BatchNorm2d(4))
        self.backbone.add_module("conv2", nn.Conv2d(4, 2, 3))
        self.head = nn.Linear(2 * 4 * 4, 3)

    def forward(self, x):
        return self.head(self.backbone(x).flatten(1))


@pytest.fixture
def net():
    torch.manual_seed(0)
    n = Net()
    n.backbone.bn.running_mean.uniform_(-1, 1)  # eval vs train mode would give different features
    return n


def test_features_match_manual_eval_forward_and_mode_is_restored(net):
    x = torch.randn(10, 1, 8, 8)
    net.train()
    feats = extract_features(net, x, ["backbone.conv2", "head", "backbone.conv1"], batch_size=3)
    assert net.training  # restored
    assert feats["backbone.conv2"].shape == (10, 32) and feats["head"].shape == (10, 3)
    assert feats["backbone.conv1"].shape == (10, 4 * 6 * 6)
    net.eval()
    with torch.no_grad():
        c2 = net.backbone(x)
        assert torch.allclose(feats["backbone.conv2"], c2.flatten(1), atol=1e-6)
        assert torch.allclose(feats["head"], net(x), atol=1e-6)
    assert not feats["head"].requires_grad
    assert all(len(m._forward_hooks) == 0 for m in net.modules())


def test_dataloader_with_labels_gives_same_features(net):
    x = torch.randn(9, 1, 8, 8)
    loader = DataLoader(TensorDataset(x, torch.zeros(9)), batch_size=4)
    a = extract_features(net, loader, "backbone.conv2")["backbone.conv2"]
    b = extract_features(net, x, "backbone.conv2", batch_size=100)["backbone.conv2"]
    assert torch.allclose(a, b, atol=1e-6)


def test_dict_batches_are_passed_as_keyword_arguments():
    class Kw(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Linear(3, 2)

        def forward(self, inputs, scale):
            return self.proj(inputs) * scale

    m = Kw()
    x = torch.randn(4, 3)
    f = extract_features(m, [{"inputs": x, "scale": 2.0}], "proj")["proj"]
    assert torch.allclose(f, m.proj(x).detach(), atol=1e-6)


def test_unknown_layer_lists_available_names(net):
    with pytest.raises(UnknownLayerError, match=r"unknown layer name\(s\) \['backbone.conv3'\].*backbone.conv2"):
        extract_features(net, torch.randn(2, 1, 8, 8), ["backbone.conv3"])
    assert issubclass(UnknownLayerError, ValueError)


def test_hooks_removed_and_mode_restored_on_error(net):
    net.train()
    with pytest.raises(RuntimeError):
        extract_features(net, torch.randn(2, 1, 5, 5), ["backbone.conv2"])  # too small for the head
    assert net.training
    assert all(len(m._forward_hooks) == 0 for m in net.modules())
