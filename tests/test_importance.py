"""Importance weights p_T/p_S from a domain classifier (Bickel et al. 2007), and the importance-weighted method."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from toy import write_toy_pair

from domainadapt.importance import (
    DensityRatioEstimator,
    effective_sample_size,
    finalize_weights,
    importance_weights,
)
from domainadapt.methods import MethodContext, MethodError, StepOutput, build_method
from domainadapt.runs import run
from domainadapt.train import TrainConfig, load_checkpoint

MU = np.array([1.0, 0.5])


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Tiny models: one thread each (see conftest.py)."""


def _gaussians(n_s: int = 4000, n_t: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source N(0, I), target N(μ, I): the true ratio is exp(μ·x − |μ|²/2)."""
    rng = np.random.default_rng(seed)
    xs = rng.standard_normal((n_s, 2))
    xt = rng.standard_normal((n_t, 2)) + MU
    return xs, xt, np.exp(xs @ MU - MU @ MU / 2)


@pytest.mark.parametrize("classifier", ["logistic", "mlp"])
def test_weights_recover_the_analytic_density_ratio(classifier):
    xs, xt, true = _gaussians()
    options = {"steps": 300} if classifier == "mlp" else {}
    est = importance_weights(xs, xt, classifier=classifier, normalize=False, **options)  # raw ratios
    assert np.corrcoef(est, true)[0, 1] > 0.95
    bulk = (true > np.quantile(true, 0.05)) & (true < np.quantile(true, 0.95))
    rel = np.abs(est[bulk] - true[bulk]) / true[bulk]
    assert np.median(rel) < (0.1 if classifier == "logistic" else 0.2), np.median(rel)
    # the prior correction n_S/n_T: mean of the raw ratio over the source is E_S[p_T/p_S] = 1
    assert est.mean() == pytest.approx(1.0, abs=0.1)


def test_ratio_at_new_points_and_weight_options():
    xs, xt, _ = _gaussians()
    est = DensityRatioEstimator().fit(xs, xt)
    grid = np.array([[0.0, 0.0], [1.0, 0.5], [-1.0, 0.0]])
    np.testing.assert_allclose(est.ratio(grid), np.exp(grid @ MU - MU @ MU / 2), rtol=0.15)
    w = importance_weights(xs, xt, clip=2.0)
    assert w.mean() == pytest.approx(1.0)  # self-normalised
    raw = importance_weights(xs, xt, clip=2.0, normalize=False)
    assert raw.max() == 2.0 and (raw <= 2.0).all()
    np.testing.assert_allclose(finalize_weights([1.0, 3.0, 8.0], clip=4.0), np.array([1.0, 3.0, 4.0]) * 3 / 8)
    assert effective_sample_size(np.ones(10)) == pytest.approx(10)
    assert effective_sample_size([1.0, 0.0, 0.0]) == pytest.approx(1)
    assert 1 < effective_sample_size(w) < len(w)


def test_bad_inputs():
    xs, xt, _ = _gaussians(50, 50)
    with pytest.raises(ValueError, match="unknown domain classifier 'svm'"):
        DensityRatioEstimator("svm")
    with pytest.raises(ValueError, match="source features have 2 dimensions, target features 3"):
        importance_weights(xs, np.zeros((5, 3)))
    with pytest.raises(ValueError, match="target features is empty"):
        importance_weights(xs, np.zeros((0, 2)))
    with pytest.raises(ValueError, match="NaN"):
        importance_weights(xs, np.full((5, 2), np.nan))
    with pytest.raises(ValueError, match="clip must be > 0"):
        importance_weights(xs, xt, clip=0.0)
    with pytest.raises(RuntimeError, match="call fit"):
        DensityRatioEstimator().ratio(xs)


# ------------------------------------------------------------------------------------------------ the method
def _out(f_s, f_t, y_s, progress=0.5, logits_s=None):
    logits_s = torch.zeros(len(f_s), 3, requires_grad=True) if logits_s is None else logits_s
    return StepOutput(x_s=None, y_s=y_s, x_t=None, f_s=f_s, f_t=f_t, logits_s=logits_s, logits_t=None,
                      progress=progress, step=0)


def test_method_upweights_the_source_examples_that_look_like_the_target():
    torch.manual_seed(0)
    method = build_method("importance_weighted", MethodContext(feature_dim=2, num_classes=3, total_steps=100))
    opt = torch.optim.Adam(method.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(0)
    n = 64
    for _ in range(150):
        # source: half cluster A at (−2, 0), half cluster B at (+2, 0); target: cluster B only
        centers = torch.tensor([[-2.0, 0.0], [2.0, 0.0]])[torch.arange(n) % 2]
        f_s = (centers + 0.5 * torch.randn(n, 2, generator=g)).requires_grad_()
        f_t = torch.tensor([2.0, 0.0]) + 0.5 * torch.randn(n, 2, generator=g)
        losses = method.losses(_out(f_s, f_t, torch.zeros(n, dtype=torch.long)), None)
        opt.zero_grad()
        losses["domain"].backward()
        opt.step()
        assert f_s.grad is None  # the domain loss never reaches the features (they are detached)
    w = method.last_weights
    assert w.mean().item() == pytest.approx(1.0, abs=1e-5)
    assert w[1::2].mean() > 5 * w[0::2].mean()  # cluster B (shared with the target) dominates
    # during warm-up every weight is 1: plain cross-entropy. All-zero logits would give log 3 under any weighting,
    # so the logits make cluster A (even rows) badly classified (CE ≈ 3.8) and cluster B (odd rows) well (CE ≈ 0.1):
    # measured, the plain mean is 1.91 and the weighted one (B upweighted) 0.16
    y = torch.zeros(n, dtype=torch.long)
    logits = torch.zeros(n, 3)
    logits[0::2, 0], logits[1::2, 0] = -3.0, 3.0
    logits[:, 1] = 0.5 * torch.randn(n, generator=g)  # not all rows alike within a cluster
    ce = torch.nn.functional.cross_entropy(logits, y, reduction="none")
    plain = ce.mean().item()
    weighted = (method.source_weights(f_s, len(f_t)) * ce).mean().item()
    assert plain - weighted > 1.0, (plain, weighted)  # the two readings are far apart here
    warm = method.losses(_out(f_s.detach(), f_t, y, progress=0.0, logits_s=logits), None)
    assert torch.equal(method.last_weights, torch.ones(n))
    assert warm["cls"].item() == pytest.approx(plain, rel=1e-6)
    after = method.losses(_out(f_s.detach(), f_t, y, progress=0.5, logits_s=logits), None)  # warm-up (0.1) is over
    assert after["cls"].item() == pytest.approx(weighted, rel=1e-6)
    with pytest.raises(MethodError, match="clip must be > 0"):
        build_method("importance_weighted", MethodContext(2, 3, 10), clip=0.0)


def test_method_trains_through_the_trainer(tmp_path):
    src, tgt = write_toy_pair(tmp_path)
    cfg = TrainConfig(method="importance_weighted", source=src, target=tgt, image_size=16, steps=20, batch_size=32,
                      lr=0.05, device="cpu", progress=False)
    result = run(cfg, tmp_path / "run")
    assert np.isfinite(result["metrics"]["train/cls"]) and result["metrics"]["train/domain"] > 0
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert "method.discriminator.net.0.weight" in state["modules"]
    assert [g["name"] for g in state["optimizer"]["param_groups"]] == ["model", "method"]
