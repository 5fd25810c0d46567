"""MDD and FixMatch: the losses against values computed by hand, the signs of MDD's minimax game, FixMatch's views,
adaptation on rotated two moons, and a 3-step run of each through `domainadapt.runs.run`."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from domainadapt.methods import MethodContext, StepOutput, available_methods, build_method, grl_coefficient
from domainadapt.methods.fixmatch import fixmatch_loss, make_views, strong_digits, strong_randaugment, weak_translate
from domainadapt.methods.mdd import log_one_minus_softmax, margin_disparity
from domainadapt.runs import run
from domainadapt.train import TrainConfig

from test_alignment_methods import _train_moons
from toy import write_toy_pair


def _softmax(row):
    e = [math.exp(v) for v in row]
    return [v / sum(e) for v in e]


def _out(f_s, f_t, logits_s, logits_t, progress=1.0):
    y_s = torch.arange(len(f_s)) % logits_s.shape[1]
    return StepOutput(x_s=None, y_s=y_s, x_t=None, f_s=f_s, f_t=f_t, logits_s=logits_s, logits_t=logits_t,
                      progress=progress, step=5)


def test_both_methods_are_registered():
    assert {"mdd", "fixmatch"} <= set(available_methods())


# ---------------------------------------------------------------- MDD


def _disparity_by_hand(adv_s, adv_t, pred_s, pred_t, margin):
    src = sum(math.log(_softmax(row)[c]) for row, c in zip(adv_s, pred_s)) / len(adv_s)
    tgt = sum(math.log(1 - _softmax(row)[c]) for row, c in zip(adv_t, pred_t)) / len(adv_t)
    return tgt + margin * src


def test_margin_disparity_of_given_logits_by_hand():
    adv_s = [[2.0, 0.0, -1.0], [0.3, 0.1, 1.2]]
    adv_t = [[0.5, 1.5, 0.0], [-1.0, 0.0, 3.0], [0.0, 0.0, 0.0]]
    pred_s, pred_t = [0, 2], [1, 2, 0]
    got = margin_disparity(torch.tensor(adv_s), torch.tensor(adv_t), torch.tensor(pred_s), torch.tensor(pred_t), 4.0)
    assert got.item() == pytest.approx(_disparity_by_hand(adv_s, adv_t, pred_s, pred_t, 4.0), rel=1e-6)
    # log(1 − p) stays finite and exact where p → 1 (a clamp at 1e-6 would give log 1e-6 = −13.8)
    sure = log_one_minus_softmax(torch.tensor([[40.0, 0.0]]), torch.tensor([0]))
    assert sure.item() == pytest.approx(-40.0 - math.log1p(math.exp(-40.0)), rel=1e-6)


def test_mdd_losses_are_source_ce_and_minus_eta_times_d_with_the_main_heads_argmax():
    g = torch.Generator().manual_seed(0)
    f_s, f_t = torch.randn(4, 5, generator=g), torch.randn(3, 5, generator=g)
    logits_s, logits_t = torch.randn(4, 3, generator=g), torch.randn(3, 3, generator=g)
    method = build_method("mdd", MethodContext(5, 3, 10), hidden=8, dropout=0.0, margin=2.0, weight=0.5)
    losses = method.losses(_out(f_s, f_t, logits_s, logits_t, progress=0.3), nn.Identity())
    assert set(losses) == {"cls", "mdd"}
    with torch.no_grad():
        adv_s, adv_t = method.adversary(f_s).tolist(), method.adversary(f_t).tolist()
    expected_d = _disparity_by_hand(adv_s, adv_t, logits_s.argmax(1).tolist(), logits_t.argmax(1).tolist(), 2.0)
    assert losses["mdd"].item() == pytest.approx(-0.5 * expected_d, rel=1e-5)
    y_s = torch.arange(4) % 3
    cls = -sum(math.log(_softmax(row)[c]) for row, c in zip(logits_s.tolist(), y_s.tolist())) / 4
    assert losses["cls"].item() == pytest.approx(cls, rel=1e-5)
    reports = method.take_reports()
    assert reports["grl_coeff"][0] == pytest.approx(grl_coefficient(0.3, max_coeff=0.1))
    assert float(reports["disparity"][0]) == pytest.approx(expected_d, rel=1e-5)


def test_mdd_signs_the_head_ascends_d_and_the_features_get_the_reversed_gradient():
    g = torch.Generator().manual_seed(1)
    f_s = torch.randn(16, 6, generator=g).requires_grad_(True)
    f_t = (torch.randn(16, 6, generator=g) + 0.5).requires_grad_(True)
    logits_s, logits_t = torch.randn(16, 3, generator=g), torch.randn(16, 3, generator=g)
    torch.manual_seed(0)
    method = build_method("mdd", MethodContext(6, 3, 10), hidden=16, dropout=0.0)
    out = _out(f_s, f_t, logits_s, logits_t, progress=1.0)
    pred_s, pred_t = logits_s.argmax(1), logits_t.argmax(1)

    def disparity(a_s, a_t):
        with torch.no_grad():
            return margin_disparity(method.adversary(a_s), method.adversary(a_t), pred_s, pred_t, 4.0).item()

    d0 = disparity(f_s, f_t)
    method.losses(out, nn.Identity())["mdd"].backward()
    # the features get −coeff × the gradient of the same term without reversal
    ref_s, ref_t = f_s.detach().clone().requires_grad_(True), f_t.detach().clone().requires_grad_(True)
    plain = -margin_disparity(method.adversary(ref_s), method.adversary(ref_t), pred_s, pred_t, 4.0)
    grad_s, grad_t = torch.autograd.grad(plain, [ref_s, ref_t])  # leaves the head's .grad alone
    coeff = grl_coefficient(1.0, max_coeff=0.1)
    torch.testing.assert_close(f_s.grad, -coeff * grad_s)
    torch.testing.assert_close(f_t.grad, -coeff * grad_t)
    # one SGD step on the head alone (the gradient the trainer would apply) raises D on the fixed batch ...
    head = [p for p in method.adversary.parameters()]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head)
    with torch.no_grad():
        for p in head:
            p -= 0.05 * p.grad
    d1 = disparity(f_s, f_t)
    assert d1 > d0 + 1e-4
    # ... and one SGD step on the features alone (with the reversed gradient) lowers it
    with torch.no_grad():
        d2 = disparity(f_s - 1.0 * f_s.grad, f_t - 1.0 * f_t.grad)
    assert d2 < d1 - 1e-5


# ---------------------------------------------------------------- FixMatch


def test_fixmatch_loss_masks_rows_below_the_threshold_and_averages_over_the_whole_batch():
    weak = torch.tensor([[3.0, 0.0], [0.0, 0.5], [-4.0, 0.0], [2.9, 0.0]])
    # confidences: 1/(1+e^−3) = 0.9526 (passes 0.95, class 0), 0.622 (no), 0.982 (passes, class 1), 0.9478 (no)
    strong = torch.tensor([[0.2, 0.7], [5.0, -5.0], [1.0, 0.0], [-3.0, 3.0]])
    loss, rate = fixmatch_loss(weak, strong, 0.95)
    expected = (-math.log(_softmax([0.2, 0.7])[0]) - math.log(_softmax([1.0, 0.0])[1])) / 4
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert rate.item() == pytest.approx(0.5)
    none, rate0 = fixmatch_loss(weak, strong, 0.99)
    assert none.item() == 0.0 and rate0.item() == 0.0
    # no gradient through the pseudo-labels
    w, s = weak.clone().requires_grad_(True), strong.clone().requires_grad_(True)
    fixmatch_loss(w, s, 0.95)[0].backward()
    assert w.grad is None and s.grad[1].abs().sum() == 0 and s.grad[0].abs().sum() > 0


def _digit_batch(b=6, c=3, size=16):
    x = torch.zeros(1, c, size, size)
    x[..., 3:13, 6:9] = 0.9  # a bar ("1") off the centre
    x[..., 3:5, 4:12] = 0.6
    return x.repeat(b, 1, 1, 1)


def test_strong_digits_view_keeps_shape_dtype_range_and_differs_per_sample():
    x = _digit_batch()
    torch.manual_seed(0)
    y = strong_digits(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert y.min() >= 0.0 and y.max() <= 1.0
    for i in range(len(y)):
        for j in range(i):
            assert not torch.allclose(y[i], y[j], atol=1e-3), (i, j)  # each sample its own transform
        assert (y[i] == 0.5).sum() >= 8 * 8 * 3  # the cutout square (half the side), filled with 0.5
    torch.manual_seed(0)
    assert torch.equal(strong_digits(x), y)  # the global RNG only: reproducible under a seed
    half = strong_digits(x.double())
    assert half.dtype == torch.float64


def test_weak_view_is_an_integer_shift_of_at_most_two_pixels():
    x = torch.rand(8, 1, 12, 12)
    torch.manual_seed(1)
    y = weak_translate(x)
    padded = nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(len(x)):
        shifts = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                  if torch.equal(y[i], padded[i, :, 2 - dy:14 - dy, 2 - dx:14 - dx])]
        assert shifts, i


def test_randaugment_view_keeps_shape_dtype_and_range():
    torch.manual_seed(2)
    x = torch.rand(4, 3, 16, 16)
    y = strong_randaugment(x)
    assert y.shape == x.shape and y.dtype == x.dtype and 0.0 <= y.min() and y.max() <= 1.0
    weak, strong = make_views(x, "randaugment")
    assert weak.shape == strong.shape == x.shape


def test_fixmatch_refuses_inputs_it_cannot_augment():
    with pytest.raises(ValueError, match="fixmatch"):
        make_views({"input_ids": torch.zeros(2, 5, dtype=torch.long)}, "digits")
    with pytest.raises(ValueError, match="fixmatch"):
        make_views(torch.zeros(4, 2), "digits")  # point features need augment='noise'
    with pytest.raises(ValueError, match="fixmatch"):
        make_views({"input_ids": torch.zeros(2, 5, dtype=torch.long)}, "noise")
    with pytest.raises(ValueError, match="augment"):
        build_method("fixmatch", MethodContext(4, 2, 10), augment="flip")


class _Recorder(nn.Module):
    """features = flattened input, logits = a fixed linear map; records every forward's batch size."""

    def __init__(self, d, k):
        super().__init__()
        self.head = nn.Linear(d, k)
        self.calls = []

    def features_and_logits(self, x):
        self.calls.append(len(x))
        f = x.flatten(1)
        return f, self.head(f) * 20.0


def test_fixmatch_compute_losses_is_one_forward_of_source_weak_and_strong():
    torch.manual_seed(0)
    model = _Recorder(3 * 8 * 8, 4)
    method = build_method("fixmatch", MethodContext(3 * 8 * 8, 4, 10), threshold=0.5)
    g = torch.Generator().manual_seed(3)
    x_s, x_t, y_s = torch.rand(5, 3, 8, 8, generator=g), torch.rand(6, 3, 8, 8, generator=g), torch.arange(5) % 4
    torch.manual_seed(7)
    losses = method.compute_losses(model, x_s, y_s, x_t, None, 0.5, 1)
    assert model.calls == [5 + 6 + 6] and set(losses) == {"cls", "fixmatch"}
    torch.manual_seed(7)  # the same draws give the same views: the loss from them by hand
    weak, strong = make_views(x_t, "digits")
    with torch.no_grad():
        expected, rate = fixmatch_loss(model.head(weak.flatten(1)) * 20, model.head(strong.flatten(1)) * 20, 0.5)
    assert losses["fixmatch"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert float(method.take_reports()["mask_rate"][0]) == pytest.approx(rate.item())
    assert method.last_target_logits.shape == (6, 4)


# ---------------------------------------------------------------- rotated two moons and a 3-step run

# Rotated two moons (tests/test_alignment_methods.py: 40°, 2,000 steps, batch 64, 64-unit MLP), target accuracy for
# seeds 0 / 1, measured on the 2-core build machine:
#   source_only 0.598 / 0.602
#   mdd, defaults (margin 4, max_coeff 0.1, 1024-unit head, dropout 0.5): 0.893 / 0.902
#   (max_coeff 0, the head trained but no reversed gradient into the features: 0.598 / 0.602, source only exactly)
#   fixmatch, augment="noise": threshold 0.95 (the paper's τ) 0.545 / 0.542, below source only; 0.99 0.537 / 0.482;
#   0.9 0.588 / 0.650; 0.8 0.697 / 0.700; 0.7 0.838 / 0.995; τ 0.95 with weight 0.3: 0.562 / 0.583.
# Why τ = 0.95 fails here (seed 0, the logged method/mask_rate): ~0.60 of each target batch passes from step 300 on;
# those are the points the source boundary already classifies confidently, including the parts of each rotated
# moon that lie across it (confidently wrong), so the pseudo-labels reinforce the source boundary; the points near
# it never pass and cannot move it. At τ = 0.7, 0.86–0.92 pass and the boundary moves into the low-density gap.
MOONS = {  # name: (method, options, margin over max(source_only))
    "mdd": ("mdd", {}, 0.2),
    "fixmatch-0.7": ("fixmatch", {"augment": "noise", "threshold": 0.7}, 0.15),
}


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", sorted(MOONS))
def test_method_beats_source_only_on_rotated_moons(name, seed, moons_source_only, tmp_path, one_torch_thread):
    assert max(moons_source_only) < 0.65  # measured 0.598 / 0.602
    method, options, margin = MOONS[name]
    assert _train_moons(method, seed, tmp_path, **options) > max(moons_source_only) + margin


@pytest.mark.slow  # a negative finding (two 2,000-step runs), kept out of `make test`'s time
@pytest.mark.parametrize("seed", [0, 1])
def test_fixmatch_at_the_papers_threshold_does_not_gain_on_rotated_moons(seed, moons_source_only, tmp_path,
                                                                         one_torch_thread):
    # measured 0.545 / 0.542 against source only 0.598 / 0.602 (see above): it trains (well above chance) but the
    # confident pseudo-labels only confirm the source boundary
    acc = _train_moons("fixmatch", seed, tmp_path, augment="noise")
    assert 0.5 < acc < max(moons_source_only) + 0.03


@pytest.mark.parametrize("method", ["mdd", "fixmatch"])
def test_method_trains_three_steps_through_run(method, tmp_path):
    src, tgt = write_toy_pair(tmp_path)
    options = {"hidden": 16} if method == "mdd" else {}
    cfg = TrainConfig(method=method, source=src, target=tgt, image_size=16, steps=3, batch_size=16, device="cpu",
                      progress=False, log_every=1, method_kwargs=options)
    m = run(cfg, tmp_path / "run")["metrics"]
    assert math.isfinite(m["train/total"]) and math.isfinite(m["train/cls"])
    extra = {"mdd": "train/mdd", "fixmatch": "train/fixmatch"}[method]
    assert math.isfinite(m[extra])
    assert "target_test/acc" in m
