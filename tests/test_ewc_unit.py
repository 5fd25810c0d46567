"""EWC: the exact per-sample Fisher, the penalty and its gradient, online EWC, L2-SP, forgetting metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from domainadapt.evaluation import average_accuracy, backward_transfer, forgetting
from domainadapt.methods.ewc import EWCError, EWCPenalty, diagonal_fisher, load_fisher, save_fisher, sample_fisher_labels
from domainadapt.methods.l2sp import L2SPPenalty


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 4 * 4, 5)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


@pytest.fixture
def setup():
    torch.manual_seed(0)
    model = Tiny()
    model.bn.running_mean.uniform_(-0.1, 0.1)  # non-trivial statistics that must not move
    x = torch.randn(23, 3, 6, 6)
    y = torch.randint(0, 5, (23,))
    return model, x, y


def _loop_fisher(model, x, labels):
    model.eval()
    out = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for i in range(len(x)):
        loss = F.cross_entropy(model(x[i : i + 1]), labels[i : i + 1])
        grads = torch.autograd.grad(loss, list(model.parameters()))
        for (n, _), g in zip(model.named_parameters(), grads):
            out[n] += g**2
    return {n: v / len(x) for n, v in out.items()}


@pytest.mark.parametrize("kind", ["true", "empirical"])
def test_vmap_fisher_equals_a_per_sample_loop(setup, kind):
    model, x, y = setup
    model.train()
    stats = model.bn.running_mean.clone()
    fisher = diagonal_fisher(model, (x, y), kind=kind, chunk_size=5, seed=3)
    assert model.training and torch.equal(model.bn.running_mean, stats)  # mode restored, statistics untouched
    model.eval()
    g = torch.Generator().manual_seed(3)
    labels = torch.cat([sample_fisher_labels(model, x[s : s + 5], y[s : s + 5], kind, g) for s in range(0, 23, 5)])
    reference = _loop_fisher(model, x, labels)
    for n in reference:
        torch.testing.assert_close(fisher[n], reference[n], atol=1e-6, rtol=1e-5)


def test_exact_fisher_weights_every_class_by_its_probability(setup):
    model, x, _ = setup
    fisher = diagonal_fisher(model, (x[:4], torch.zeros(4, dtype=torch.long)), kind="exact")
    model.eval()
    probs = model(x[:4]).softmax(1).detach()
    ref = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for c in range(5):
        per_class = _loop_fisher_weighted(model, x[:4], c, probs[:, c])
        for n in ref:
            ref[n] += per_class[n]
    for n in ref:
        torch.testing.assert_close(fisher[n], ref[n], atol=1e-6, rtol=1e-5)


def _loop_fisher_weighted(model, x, c, w):
    out = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for i in range(len(x)):
        loss = F.cross_entropy(model(x[i : i + 1]), torch.tensor([c]))
        for (n, _), g in zip(model.named_parameters(), torch.autograd.grad(loss, list(model.parameters()))):
            out[n] += w[i] * g**2 / len(x)
    return out


def test_fisher_is_not_the_squared_batch_gradient(setup):
    model, x, y = setup
    fisher = diagonal_fisher(model, (x, y), kind="empirical")
    model.eval()
    loss = F.cross_entropy(model(x), y)
    shortcut = {n: g**2 for (n, _), g in zip(model.named_parameters(), torch.autograd.grad(loss, list(model.parameters())))}
    total = sum(f.sum() for f in fisher.values())
    total_shortcut = sum(f.sum() for f in shortcut.values())
    assert total > 3 * total_shortcut  # the per-sample variance the shortcut drops


def test_penalty_is_zero_at_the_anchor_and_its_gradient_is_lambda_f_delta(setup):
    model, x, y = setup
    fisher = diagonal_fisher(model, (x, y), kind="empirical")
    penalty = EWCPenalty(7.0)
    penalty.add_task(model, fisher)
    assert penalty(model).item() == 0.0
    anchor = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    model.zero_grad()
    penalty(model).backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, 7.0 * fisher[n] * (p.detach() - anchor[n]), atol=1e-7, rtol=1e-5)


def test_two_tasks_sum_and_online_ewc_decays(setup):
    model, x, y = setup
    fishers = [{n: torch.rand_like(p) for n, p in model.named_parameters()} for _ in range(3)]
    anchors = [{n: torch.randn_like(p) for n, p in model.named_parameters()} for _ in range(3)]
    two = EWCPenalty(2.0)
    two.add_task(anchors[0], fishers[0])
    two.add_task(anchors[1], fishers[1])
    params = dict(model.named_parameters())
    by_hand = sum(
        (fishers[t][n] * (params[n] - anchors[t][n]) ** 2).sum() for t in range(2) for n in params)
    assert two(model).item() == pytest.approx(by_hand.item(), rel=1e-5)

    online = EWCPenalty(1.0, online=True, gamma=0.5)
    for t in range(3):
        online.add_task(anchors[t], fishers[t])
    for n in params:
        torch.testing.assert_close(online.fisher()[n], 0.25 * fishers[0][n] + 0.5 * fishers[1][n] + fishers[2][n])
        torch.testing.assert_close(online.anchor()[n], anchors[2][n])
    assert online.num_anchors == 1

    fresh = EWCPenalty(2.0)
    fresh.load_state_dict(two.state_dict())
    assert fresh.num_anchors == 2 and fresh(model).item() == pytest.approx(two(model).item())


def test_l2sp_value_and_gradient(setup):
    model, _, _ = setup
    reference = {n: p.detach().clone() + 0.5 for n, p in model.named_parameters() if not n.startswith("fc")}
    penalty = L2SPPenalty(0.3, 0.2, reference=reference, new_params=["fc.weight", "fc.bias"])
    params = dict(model.named_parameters())
    value = penalty(model)
    by_hand = 0.15 * sum(((params[n] - r) ** 2).sum() for n, r in reference.items()) + \
        0.1 * sum((params[n] ** 2).sum() for n in ("fc.weight", "fc.bias"))
    assert value.item() == pytest.approx(by_hand.item(), rel=1e-6)
    value.backward()
    torch.testing.assert_close(params["conv.weight"].grad, 0.3 * (params["conv.weight"].detach() - reference["conv.weight"]))
    torch.testing.assert_close(params["fc.bias"].grad, 0.2 * params["fc.bias"].detach())


def test_continual_metrics_on_a_fixed_matrix():
    R = [[0.90, 0.10, 0.12],
         [0.80, 0.85, 0.11],
         [0.70, 0.75, 0.95]]
    assert average_accuracy(R) == pytest.approx((0.70 + 0.75 + 0.95) / 3)
    assert backward_transfer(R) == pytest.approx(((0.70 - 0.90) + (0.75 - 0.85)) / 2)
    np.testing.assert_allclose(forgetting(R), [0.90 - 0.70, 0.85 - 0.75])
    with pytest.raises(ValueError, match="square"):
        backward_transfer([[1.0, 0.5]])


def test_bad_inputs(setup, tmp_path):
    model, x, y = setup
    with pytest.raises(EWCError, match="λ must be >= 0"):
        EWCPenalty(-1.0)
    with pytest.raises(EWCError, match="γ must be in"):
        EWCPenalty(1.0, online=True, gamma=1.5)
    with pytest.raises(EWCError, match="empty"):
        diagonal_fisher(model, (x[:0], y[:0]))
    other = {"fc.weight": torch.zeros(3, 3)}
    with pytest.raises(EWCError, match="'fc.weight' has shape"):
        EWCPenalty(1.0).add_task(model, other)
    with pytest.raises(EWCError, match="'decoder.w'"):
        EWCPenalty(1.0).add_task(model, {"decoder.w": torch.zeros(1)})
    with pytest.raises(EWCError, match="unknown Fisher kind"):
        diagonal_fisher(model, (x, y), kind="batch")
    with pytest.raises(ValueError, match="α and β must be >= 0"):
        L2SPPenalty(-1.0, reference={})
    fisher = diagonal_fisher(model, (x, y), kind="empirical")
    save_fisher(tmp_path / "f.pt", fisher)
    assert all(torch.equal(v, fisher[k]) for k, v in load_fisher(tmp_path / "f.pt").items())
    (tmp_path / "bad.pt").write_bytes(b"junk")
    with pytest.raises(EWCError, match="damaged Fisher file"):
        load_fisher(tmp_path / "bad.pt")
