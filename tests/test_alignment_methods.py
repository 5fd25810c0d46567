"""DANN / DAN / CORAL: the gradient reversal layer, the loss terms, and adaptation on a synthetic shift."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from domainadapt.divergence import mmd2
from domainadapt.methods import MethodContext, StepOutput, build_method, grad_reverse, grl_coefficient
from domainadapt.methods.coral import coral_loss
from domainadapt.models import Classifier
from domainadapt.models.classifier import fresh_copy
from domainadapt.train import TrainConfig, Trainer


def test_grad_reverse_is_identity_forward_and_negated_scaled_backward():
    x = torch.randn(5, 3, requires_grad=True)
    y = grad_reverse(x, 0.37)
    assert torch.equal(y, x)
    upstream = torch.randn(5, 3)
    y.backward(upstream)
    assert torch.equal(x.grad, -0.37 * upstream)


def test_grl_coefficient_schedule():
    assert grl_coefficient(0.0) == 0.0
    assert grl_coefficient(1.0) == pytest.approx(2 / (1 + math.exp(-10)) - 1)
    assert grl_coefficient(0.1) == pytest.approx(2 / (1 + math.exp(-1)) - 1)
    assert grl_coefficient(0.5, max_coeff=0.5) == pytest.approx(0.5 * (2 / (1 + math.exp(-5)) - 1))


def test_coral_is_zero_for_equal_covariances_and_matches_its_formula():
    g = torch.Generator().manual_seed(0)
    f_s = torch.randn(40, 6, generator=g)
    assert coral_loss(f_s, f_s + 3.0).item() == pytest.approx(0.0, abs=1e-10)  # a shift leaves covariance alone
    f_t = torch.randn(30, 6, generator=g) * 2
    c_s, c_t = np.cov(f_s.numpy().T), np.cov(f_t.numpy().T)
    assert coral_loss(f_s, f_t).item() == pytest.approx(((c_s - c_t) ** 2).sum() / (4 * 36), rel=1e-5)


def test_coral_keeps_float64():
    # float64 features used to come back as a float32 loss (the covariances were taken in float32)
    g = torch.Generator().manual_seed(4)
    f_s = torch.randn(25, 4, generator=g, dtype=torch.float64)
    f_t = torch.randn(20, 4, generator=g, dtype=torch.float64) * 1.5 + 0.3
    loss = coral_loss(f_s, f_t)
    assert loss.dtype == torch.float64

    def cov(f):  # (n−1)-normalised covariance by hand, in float64
        c = f - f.mean(0)
        return c.T @ c / (len(f) - 1)

    by_hand = ((cov(f_s) - cov(f_t)) ** 2).sum() / (4 * 4 * 4)
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-12)
    assert coral_loss(f_s.float(), f_t.float()).dtype == torch.float32
    assert coral_loss(f_s.half(), f_t.half()).dtype == torch.float32  # half features: computed in float32


def _step_output(f_s, f_t, n_classes=3):
    g = torch.Generator().manual_seed(1)
    return StepOutput(x_s=None, y_s=torch.randint(0, n_classes, (len(f_s),), generator=g), x_t=None, f_s=f_s, f_t=f_t,
                      logits_s=torch.randn(len(f_s), n_classes, generator=g), logits_t=torch.randn(len(f_t), n_classes),
                      progress=0.5, step=5)


def test_dan_loss_is_mmd2_with_the_dan_kernels():
    g = torch.Generator().manual_seed(2)
    f_s, f_t = torch.randn(32, 8, generator=g), torch.randn(32, 8, generator=g) + 0.5
    method = build_method("dan", MethodContext(8, 3, 10), weight=0.7)
    losses = method.losses(_step_output(f_s, f_t), nn.Identity())
    assert losses["mmd"].item() == pytest.approx(0.7 * mmd2(f_s, f_t, kernel="dan").item(), rel=1e-6)


def test_dann_domain_loss_trains_the_discriminator_and_reverses_into_features():
    g = torch.Generator().manual_seed(3)
    f_s = torch.randn(16, 4, generator=g, requires_grad=True)
    f_t = torch.randn(16, 4, generator=g, requires_grad=True)
    method = build_method("dann", MethodContext(4, 3, 10), hidden=(8,), start_below=1.0)  # adversary on at once
    out = _step_output(f_s, f_t)
    out.progress = 1.0
    loss = method.losses(out, nn.Identity())["domain"]
    loss.backward()
    # the same loss without reversal gives the opposite feature gradient (scaled by the coefficient)
    ref_s = f_s.detach().clone().requires_grad_(True)
    ref_t = f_t.detach().clone().requires_grad_(True)
    logits = method.discriminator(torch.cat([ref_s, ref_t]))
    labels = torch.cat([torch.ones(16), torch.zeros(16)])
    nn.functional.binary_cross_entropy_with_logits(logits, labels).backward()
    coeff = grl_coefficient(1.0)
    torch.testing.assert_close(f_s.grad, -coeff * ref_s.grad)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in method.discriminator.parameters())


class _Points(torch.utils.data.Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x.float(), y.long()

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])

    def get_batch(self, index):
        return self.x[index], self.y[index]


def _moons(n: int, angle_deg: float, seed: int) -> _Points:
    from sklearn.datasets import make_moons

    x, y = make_moons(n_samples=n, noise=0.1, random_state=seed)
    x = torch.tensor(x - x.mean(0), dtype=torch.float32)
    a = math.radians(angle_deg)
    rot = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]], dtype=torch.float32)
    return _Points(x @ rot.T, torch.tensor(y))


def _train_moons(method: str, seed: int, tmp_path, **method_kwargs) -> float:
    torch.manual_seed(seed)
    backbone = nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU())
    model = Classifier(backbone, nn.Linear(64, 2), feature_dim=64, num_classes=2)
    config = TrainConfig(method=method, source="moons", target="rotated", steps=2000, batch_size=64, lr=0.05,
                         schedule="dann", seed=seed, device="cpu", progress=False, weight_decay=0.0)
    m = build_method(method, MethodContext(64, 2, config.steps, new_head=lambda: fresh_copy(model.head)),
                     **method_kwargs)
    source, target, target_test = _moons(600, 0, seed), _moons(600, 40, seed + 100), _moons(600, 40, seed + 200)
    trainer = Trainer(config, model, m, source_train=source, target_train=target, eval_sets={"target": target_test},
                      run_dir=tmp_path / f"{method}-{seed}")
    return trainer.fit()["target/acc"]


def test_dann_beats_source_only_on_rotated_moons(tmp_path, one_torch_thread):
    # tiny MLPs run fastest on one thread (intra-op threads only add overhead at this size)
    seeds = (0, 1, 2)
    source_only = [_train_moons("source_only", s, tmp_path) for s in seeds]
    dann = [_train_moons("dann", s, tmp_path, hidden=(64,)) for s in seeds]
    # measured (moons rotated by 40°, 2,000 steps, warm-started DANN): source only 0.598 / 0.602 / 0.610, DANN
    # 0.898 / 0.825 / 0.920 on this project's 2-core build machine; an adversarial run's last-step accuracy moves by
    # a few points with the CPU's float kernels (seed 1 gave > 0.85 on the CI machine), so the claim is a margin
    # per seed and a mean, not one seed's value
    assert max(source_only) < 0.7
    assert min(d - s for d, s in zip(dann, source_only)) > 0.15 and sum(dann) / len(dann) > 0.85


@pytest.mark.parametrize("method", ["dann", "dan", "coral"])
def test_methods_train_a_torchvision_resnet_on_an_image_folder(method, tmp_path):
    """Office-31 style: class sub-folders of images; ResNet-18 with weights=None (no download)."""
    from PIL import Image

    from domainadapt.runs import run

    g = torch.Generator().manual_seed(0)
    for domain in ("amazon", "webcam"):
        for k, cls in enumerate(("backpack", "bike", "mug")):
            (tmp_path / domain / cls).mkdir(parents=True)
            for i in range(6):
                pixels = (torch.rand(40, 40, 3, generator=g) * 80 + 60 * k).clamp(0, 255).byte().numpy()
                Image.fromarray(pixels).save(tmp_path / domain / cls / f"{i}.png")
    cfg = TrainConfig(method=method, source=f"folder:{tmp_path / 'amazon'}", target=f"folder:{tmp_path / 'webcam'}",
                      backbone="resnet18", image_size=32, steps=3, batch_size=8, lr=1e-3, optimizer="adam",
                      device="cpu", progress=False, log_every=1)
    result = run(cfg, tmp_path / "run")
    m = result["metrics"]
    extra = {"dann": "train/domain", "dan": "train/mmd", "coral": "train/coral"}[method]
    assert math.isfinite(m["train/total"])
    # the logged total is the sum of the logged terms of the same (last) step
    assert m["train/total"] == pytest.approx(m["train/cls"] + m[extra], rel=1e-5, abs=1e-7)
    # the classes differ in brightness (60 grey levels apart), which 3 Adam steps learn: the last step's source
    # cross-entropy is below log 3 (chance) and both domains' test accuracy is well above chance (1/3).
    # measured: train/cls 0.04-0.05, source and target test accuracy 1.0 for all three methods
    assert m["train/cls"] < math.log(3)
    assert m["source_test/acc"] > 2 / 3 and m["target_test/acc"] > 2 / 3
    if method == "dann":  # a fresh discriminator is near chance: BCE ≈ log 2 (measured 0.74)
        assert 0.4 < m[extra] < 1.0
    elif method == "coral":  # two batches of 8 never have equal covariances (measured 0.088)
        assert m[extra] > 0
    else:  # unbiased MMD² may be negative, but with kernel values in [0, 1] it lies in [−2, 2] (measured −0.010)
        assert m[extra] != 0 and -2.0 <= m[extra] <= 2.0
