"""EWC: the per-sample Fisher against a plain autograd loop, the penalty and its gradient, multi-task and online
anchors, checkpoints, L2-SP, and the named errors on bad input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from domainadapt.regularizers.ewc import EWCPenalty, load_fisher, save_fisher
from domainadapt.regularizers.fisher import (
    EmptyDataError,
    EWCError,
    ParameterMismatchError,
    diagonal_fisher,
    sample_fisher_labels,
    sample_indices,
)
from domainadapt.regularizers.l2sp import L2SPError, L2SPPenalty

N, C = 21, 5


class Tiny(nn.Module):
    """conv → BatchNorm → ReLU → linear: enough structure for per-sample gradients to differ from batch ones."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 4 * 4, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


class GetBatchData:
    """The `get_batch` protocol of the digit domains."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def get_batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[index], self.y[index]


@pytest.fixture
def setup():
    torch.manual_seed(0)
    model = Tiny()
    with torch.no_grad():  # non-trivial BatchNorm state, which the Fisher must use and must not move
        model.bn.running_mean.uniform_(-0.2, 0.2)
        model.bn.running_var.uniform_(0.5, 1.5)
        model.bn.weight.uniform_(0.5, 1.5)
        model.bn.bias.uniform_(-0.1, 0.1)
    x = torch.randn(N, 3, 6, 6)
    y = torch.randint(0, C, (N,))
    return model, x, y


def loop_fisher(model: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """The definition: one autograd.grad per example, squared, averaged (float64 accumulation)."""
    model.eval()
    named = list(model.named_parameters())
    out = {n: torch.zeros_like(p, dtype=torch.float64) for n, p in named}
    for i in range(len(x)):
        loss = F.cross_entropy(model(x[i : i + 1]), labels[i : i + 1])
        for (n, _), g in zip(named, torch.autograd.grad(loss, [p for _, p in named])):
            out[n] += g.double() ** 2
    return {n: (v / len(x)).float() for n, v in out.items()}


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = 1e-6) -> None:
    assert sorted(a) == sorted(b)
    for n, value in a.items():
        assert value.dtype == torch.float32, n
        torch.testing.assert_close(value, b[n], atol=atol, rtol=1e-5, msg=lambda m, n=n: f"{n}: {m}")


# --------------------------------------------------------------------------------------------- the Fisher


@pytest.mark.parametrize("kind", ["true", "empirical"])
def test_vmap_fisher_equals_the_per_sample_loop(setup, kind):
    model, x, y = setup
    # odd batch and chunk sizes, and a seeded subset: the loop reproduces the choice and the sampled labels
    fisher = diagonal_fisher(model, (x, y), kind=kind, n_samples=17, batch_size=7, chunk_size=3, seed=5)
    g = torch.Generator().manual_seed(5)
    idx = sample_indices(N, 17, g)
    assert len(idx) == 17 and len(set(idx.tolist())) == 17
    model.eval()
    labels = sample_fisher_labels(model, x[idx], y[idx], kind, g)
    if kind == "empirical":
        assert torch.equal(labels, y[idx])
    else:
        assert not torch.equal(labels, y[idx])  # sampled from the model, not the data's labels
    assert_same(fisher, loop_fisher(model, x[idx], labels))


@pytest.mark.parametrize("kind", ["true", "empirical", "exact"])
def test_the_per_example_autograd_loop_equals_the_vectorised_fisher(setup, kind):
    """The two gradient routes of the one diagonal_fisher (vmap for classifiers, a loop for models that do not
    vectorise, e.g. Hugging Face attention) give the same Fisher, sampled labels included."""
    model, x, y = setup
    vectorised = diagonal_fisher(model, (x, y), kind=kind, n_samples=11, batch_size=4, chunk_size=3, seed=3)
    looped = diagonal_fisher(model, (x, y), kind=kind, n_samples=11, batch_size=4, seed=3, vectorize=False)
    assert_same(looped, vectorised)


def test_data_protocols_and_chunking_give_the_same_fisher(setup):
    model, x, y = setup
    ref = diagonal_fisher(model, (x, y), kind="true", seed=1)
    assert_same(diagonal_fisher(model, GetBatchData(x, y), kind="true", seed=1, chunk_size=4, batch_size=5), ref)
    assert_same(diagonal_fisher(model, TensorDataset(x, y), kind="true", seed=1, chunk_size=64), ref)
    other_seed = diagonal_fisher(model, (x, y), kind="true", seed=2)
    assert any(not torch.allclose(other_seed[n], ref[n]) for n in ref)


def test_exact_fisher_weights_every_class_by_its_probability(setup):
    model, x, y = setup
    fisher = diagonal_fisher(model, (x[:6], y[:6]), kind="exact", chunk_size=4)
    model.eval()
    probs = model(x[:6]).softmax(1).detach()
    ref = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for c in range(C):
        for i in range(6):
            loss = F.cross_entropy(model(x[i : i + 1]), torch.tensor([c]))
            for (n, _), gr in zip(model.named_parameters(), torch.autograd.grad(loss, list(model.parameters()))):
                ref[n] += probs[i, c] * gr**2 / 6
    assert_same(fisher, ref)


def test_only_the_asked_parameters_and_those_that_require_grad(setup):
    model, x, y = setup
    model.conv.weight.requires_grad_(False)
    fisher = diagonal_fisher(model, (x, y), kind="empirical")
    assert "conv.weight" not in fisher and "fc.weight" in fisher
    only = diagonal_fisher(model, (x, y), kind="empirical", params=["conv.weight"])
    assert list(only) == ["conv.weight"]
    model.conv.weight.requires_grad_(True)
    torch.testing.assert_close(only["conv.weight"], loop_fisher(model, x, y)["conv.weight"], atol=1e-6, rtol=1e-5)


def test_fisher_is_not_the_squared_batch_mean_gradient(setup):
    model, x, y = setup
    fisher = diagonal_fisher(model, (x, y), kind="empirical")
    model.eval()
    loss = F.cross_entropy(model(x), y)
    shortcut = [g**2 for g in torch.autograd.grad(loss, list(model.parameters()))]
    total, total_shortcut = sum(f.sum() for f in fisher.values()), sum(s.sum() for s in shortcut)
    assert total > 4 * total_shortcut  # the shortcut drops the per-sample variance (and shrinks with batch size)


def test_batchnorm_statistics_do_not_move_and_modes_are_restored(setup):
    model, x, y = setup
    model.train()
    model.conv.eval()  # a mixed state must come back as it was
    before = {n: b.clone() for n, b in model.named_buffers()}
    for kind in ("true", "empirical", "exact"):
        diagonal_fisher(model, (x, y), kind=kind, chunk_size=8)
    for n, b in model.named_buffers():
        assert torch.equal(b, before[n]), n
    assert model.training and model.bn.training and model.fc.training and not model.conv.training


# --------------------------------------------------------------------------------------------- the penalty


def _random_fisher(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: torch.rand_like(p) for n, p in model.named_parameters()}


def _random_params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: torch.randn_like(p) for n, p in model.named_parameters()}


def test_penalty_is_zero_at_the_anchor_and_its_gradient_is_lambda_f_delta(setup):
    model, x, y = setup
    fisher = diagonal_fisher(model, (x, y), kind="true")
    penalty = EWCPenalty(7.0)
    assert penalty(model).item() == 0.0 and penalty.num_anchors == 0  # no tasks yet
    penalty.add_task(model, fisher)
    value = penalty(model)
    assert value.dim() == 0 and value.item() == 0.0
    anchor = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    model.zero_grad()
    value = penalty(model)
    value.backward()
    params = dict(model.named_parameters())
    by_hand = 3.5 * sum((fisher[n] * (params[n].detach() - anchor[n]) ** 2).sum() for n in params)
    assert value.item() == pytest.approx(by_hand.item(), rel=1e-5)
    for n, p in params.items():
        torch.testing.assert_close(p.grad, 7.0 * fisher[n] * (p.detach() - anchor[n]), atol=1e-7, rtol=1e-5)


def test_several_tasks_sum_and_online_ewc_decays(setup):
    model, _, _ = setup
    fishers = [_random_fisher(model) for _ in range(3)]
    anchors = [_random_params(model) for _ in range(3)]
    params = dict(model.named_parameters())

    two = EWCPenalty(2.0)
    two.add_task(anchors[0], fishers[0])
    two.add_task(anchors[1], fishers[1])
    by_hand = sum((fishers[t][n] * (params[n] - anchors[t][n]) ** 2).sum() for t in range(2) for n in params)
    assert two.num_anchors == 2 and two(model).item() == pytest.approx(by_hand.item(), rel=1e-5)
    one = [EWCPenalty(2.0) for _ in range(2)]
    for t in range(2):
        one[t].add_task(anchors[t], fishers[t])
    assert two(model).item() == pytest.approx((one[0](model) + one[1](model)).item(), rel=1e-6)

    gamma = 0.5
    online = EWCPenalty(3.0, online=True, gamma=gamma)
    for t in range(3):
        online.add_task(anchors[t], fishers[t])
    assert online.num_anchors == 1 and int(online.num_tasks) == 3
    for n in params:
        torch.testing.assert_close(online.fisher()[n], gamma**2 * fishers[0][n] + gamma * fishers[1][n] + fishers[2][n])
        torch.testing.assert_close(online.anchor()[n], anchors[2][n])
    decayed = {n: gamma**2 * fishers[0][n] + gamma * fishers[1][n] + fishers[2][n] for n in params}
    by_hand = 1.5 * sum((decayed[n] * (params[n] - anchors[2][n]) ** 2).sum() for n in params)
    assert online(model).item() == pytest.approx(by_hand.item(), rel=1e-5)


@pytest.mark.parametrize("online", [False, True])
def test_state_dict_round_trip_into_a_fresh_penalty(setup, online):
    model, _, _ = setup
    penalty = EWCPenalty(2.0, online=online, gamma=0.7)
    for _ in range(3):
        penalty.add_task(_random_params(model), _random_fisher(model))
    state = penalty.state_dict()
    n_anchors = 1 if online else 3
    assert set(state) == {"num_tasks"} | {f"{kind}{t}__{n.replace('.', '__')}" for kind in ("fisher", "anchor")
                                          for t in range(n_anchors) for n in dict(model.named_parameters())}
    fresh = EWCPenalty(2.0, online=online, gamma=0.7)
    fresh.load_state_dict(state)
    assert fresh.num_anchors == n_anchors and int(fresh.num_tasks) == 3
    assert sorted(fresh.param_names) == sorted(n for n, _ in model.named_parameters())
    assert fresh(model).item() == pytest.approx(penalty(model).item(), rel=1e-6)
    # through a parent module (what a trainer checkpoint does), also into a penalty that already has a task
    parent = nn.ModuleDict({"ewc": EWCPenalty(2.0, online=online, gamma=0.7)})
    parent["ewc"].add_task(_random_params(model), _random_fisher(model))
    parent.load_state_dict(nn.ModuleDict({"ewc": penalty}).state_dict())
    assert parent["ewc"](model).item() == pytest.approx(penalty(model).item(), rel=1e-6)
    # and adding a task afterwards continues the sequence
    fresh.add_task(_random_params(model), _random_fisher(model))
    assert int(fresh.num_tasks) == 4 and fresh.num_anchors == (1 if online else 4)


def test_buffers_move_with_the_module(setup):
    model, _, _ = setup
    penalty = EWCPenalty(1.0)
    penalty.add_task(model, _random_fisher(model))
    penalty.double()
    assert all(b.dtype == torch.float64 for k, b in penalty.named_buffers() if k != "num_tasks")
    assert penalty.float()(model).item() == 0.0


def test_save_and_load_fisher(setup, tmp_path):
    model, x, y = setup
    fisher = diagonal_fisher(model, (x, y), kind="empirical")
    save_fisher(tmp_path / "sub" / "f.pt", fisher)
    loaded = load_fisher(tmp_path / "sub" / "f.pt")
    assert sorted(loaded) == sorted(fisher) and all(torch.equal(loaded[k], fisher[k]) for k in fisher)
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["f.pt"]  # no temp file left behind


# --------------------------------------------------------------------------------------------- L2-SP


def test_l2sp_value_and_gradient(setup):
    model, _, _ = setup
    start = {k: v + 0.5 if v.is_floating_point() else v for k, v in model.state_dict().items()}  # incl. BN buffers
    reference = {k: v for k, v in start.items() if not k.startswith("fc.")}
    alpha, beta = 0.3, 0.2
    penalty = L2SPPenalty(alpha, beta, reference=reference, new_params=["fc.weight", "fc.bias"])
    params = dict(model.named_parameters())
    shared = [n for n in params if not n.startswith("fc.")]
    value = penalty(model)
    by_hand = alpha / 2 * sum(((params[n] - reference[n]) ** 2).sum() for n in shared) + \
        beta / 2 * sum((params[n] ** 2).sum() for n in ("fc.weight", "fc.bias"))
    assert value.item() == pytest.approx(by_hand.item(), rel=1e-6)
    value.backward()
    for n in shared:
        torch.testing.assert_close(params[n].grad, alpha * (params[n].detach() - reference[n]))
    for n in ("fc.weight", "fc.bias"):
        torch.testing.assert_close(params[n].grad, beta * params[n].detach())
    at_start = L2SPPenalty(1.0, reference={n: p.detach().clone() for n, p in params.items()})
    assert at_start(model).item() == 0.0


# --------------------------------------------------------------------------------------------- bad input


def test_fisher_bad_input(setup):
    model, x, y = setup
    with pytest.raises(EmptyDataError, match="empty"):
        diagonal_fisher(model, (x[:0], y[:0]))
    with pytest.raises(EmptyDataError, match="empty"):
        diagonal_fisher(model, TensorDataset(x[:0], y[:0]))
    with pytest.raises(EmptyDataError, match="n_samples >= 1"):
        diagonal_fisher(model, (x, y), n_samples=0)
    with pytest.raises(EWCError, match="unknown Fisher kind 'batch'"):
        diagonal_fisher(model, (x, y), kind="batch")
    with pytest.raises(ParameterMismatchError, match="'decoder.w'"):
        diagonal_fisher(model, (x, y), params=["decoder.w"])
    with pytest.raises(EWCError, match="21 inputs but 20 labels"):
        diagonal_fisher(model, (x, y[:20]))


def test_penalty_bad_input(setup, tmp_path):
    model, _, _ = setup
    with pytest.raises(EWCError, match="λ must be >= 0"):
        EWCPenalty(-1.0)
    for gamma in (0.0, 1.5):
        with pytest.raises(EWCError, match="γ must be in"):
            EWCPenalty(1.0, online=True, gamma=gamma)
    fisher = _random_fisher(model)
    with pytest.raises(ParameterMismatchError, match="'fc.weight' has shape"):
        EWCPenalty(1.0).add_task(model, {**fisher, "fc.weight": torch.zeros(3, 3)})
    with pytest.raises(ParameterMismatchError, match="'decoder.w'"):
        EWCPenalty(1.0).add_task(model, {**fisher, "decoder.w": torch.zeros(1)})
    anchor = {n: p.detach() for n, p in model.named_parameters() if n != "conv.bias"}
    with pytest.raises(ParameterMismatchError, match="'conv.bias'"):
        EWCPenalty(1.0).add_task(anchor, fisher)  # an anchor that lacks a parameter the Fisher covers
    with pytest.raises(EWCError, match="'bn.weight' has negative"):
        EWCPenalty(1.0).add_task(model, {**fisher, "bn.weight": -fisher["bn.weight"]})
    penalty = EWCPenalty(1.0)
    penalty.add_task(model, fisher)
    with pytest.raises(ParameterMismatchError, match="'conv.weight'"):
        penalty.add_task(model, {n: f for n, f in fisher.items() if n != "conv.weight"})

    class Wider(Tiny):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 5)

    with pytest.raises(ParameterMismatchError, match="'conv.weight' has shape"):
        penalty(Wider())  # the first offending parameter is named
    with pytest.raises(ParameterMismatchError, match="'bn.bias' is not in the model"):
        penalty(_without_bn_bias())
    online = EWCPenalty(1.0, online=True)
    for _ in range(2):
        online.add_task(model, fisher)
    with pytest.raises(EWCError, match="online"):
        EWCPenalty(1.0).load_state_dict(online.state_dict())
    (tmp_path / "bad.pt").write_bytes(b"not a torch file")
    with pytest.raises(EWCError, match=f"damaged Fisher file {tmp_path / 'bad.pt'}"):
        load_fisher(tmp_path / "bad.pt")
    with pytest.raises(FileNotFoundError, match="no Fisher file"):
        load_fisher(tmp_path / "missing.pt")


def _without_bn_bias() -> nn.Module:
    model = Tiny()
    model.bn = nn.BatchNorm2d(4, affine=False)
    return model


def test_l2sp_bad_input(setup):
    model, _, _ = setup
    reference = {n: p.detach().clone() for n, p in model.named_parameters()}
    for alpha, beta in ((-1.0, 0.0), (1.0, -0.1), (float("nan"), 0.0)):
        with pytest.raises(L2SPError, match="α and β must be >= 0"):
            L2SPPenalty(alpha, beta, reference=reference)
    with pytest.raises(L2SPError, match="'fc.bias' is both shared"):
        L2SPPenalty(1.0, reference=reference, new_params=["fc.bias"])
    with pytest.raises(L2SPError, match="'conv.weight' has shape"):
        L2SPPenalty(1.0, reference={**reference, "conv.weight": torch.zeros(2)})(model)
    with pytest.raises(L2SPError, match="'head.w' is not in the model"):
        L2SPPenalty(1.0, reference={**reference, "head.w": torch.zeros(2)})(model)
    with pytest.raises(L2SPError, match="new parameter 'head.b'"):
        L2SPPenalty(1.0, 1.0, reference={}, new_params=["head.b"])(model)


def test_fisher_coverage_finds_the_weights_of_a_unit_dead_on_the_data():
    """A hidden unit that never fires on the data has F = 0 on its incoming weights, its bias and its outgoing
    weights: EWC leaves exactly those free (the reason it can fail to hold the old task, see fisher_coverage)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    x = torch.rand(64, 6)  # non-negative inputs
    with torch.no_grad():
        model[0].weight[2].fill_(-1.0)  # unit 2: negative weights and bias on non-negative inputs → never fires
        model[0].bias[2] = -0.5
    fisher = diagonal_fisher(model, (x, torch.zeros(64, dtype=torch.long)), kind="true", chunk_size=16)
    assert (fisher["0.weight"][2] == 0).all() and fisher["0.bias"][2] == 0 and (fisher["2.weight"][:, 2] == 0).all()
    alive = torch.ones(8, dtype=torch.bool)
    alive[2] = False
    assert (fisher["0.weight"][alive] > 0).all() and (fisher["2.weight"][:, alive] > 0).all()
    from domainadapt.regularizers.fisher import fisher_coverage

    cov = fisher_coverage(fisher)
    assert cov["0.weight"] == pytest.approx(6 / 48) and cov["0.bias"] == pytest.approx(1 / 8)
    assert cov["2.weight"] == pytest.approx(3 / 24) and cov["2.bias"] == 0.0
    assert cov["all"] == pytest.approx((6 + 1 + 3) / (48 + 8 + 24 + 3))
    assert fisher_coverage(fisher, tol=float("inf"))["all"] == 1.0
    with pytest.raises(EWCError, match="empty"):
        fisher_coverage({})
