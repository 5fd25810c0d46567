"""The one evaluation loop: modes restored (also on error), measures, and rank sharding over two gloo processes."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from gloo import run_worker_script

from domainadapt.inference import ClassifierMetrics, Collect, Predictions, eval_mode, evaluate, run_loop

REPO = Path(__file__).resolve().parents[1]


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5))
        self.head = nn.Linear(8, 3)
        self.num_classes = 3

    def forward(self, x):
        return self.head(self.body(x))


def data(n: int = 23, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g))


def test_eval_mode_restores_every_submodule_flag_also_on_error():
    net = Net().train()
    net.body[1].eval()  # a frozen BatchNorm kept in eval mode during training
    with pytest.raises(RuntimeError, match="boom"):
        with eval_mode(net):
            assert not any(m.training for m in net.modules())
            raise RuntimeError("boom")
    assert net.training and not net.body[1].training and net.body[3].training


def test_measures_equal_a_hand_computed_pass():
    torch.manual_seed(0)
    net, ds = Net().train(), data()
    x, y = ds.tensors
    with torch.no_grad():
        logits = net.eval()(x)
    net.train()
    metrics = evaluate(net, ds, device=torch.device("cpu"), batch_size=5)
    assert metrics["acc"] == pytest.approx(float((logits.argmax(1) == y).float().mean()))
    assert metrics["loss"] == pytest.approx(float(nn.functional.cross_entropy(logits, y)), rel=1e-6)
    pred, true = run_loop(net, ds, Predictions(), batch_size=4)
    assert torch.equal(pred, logits.argmax(1)) and torch.equal(true, y)
    feats = run_loop(net, ds, Collect(lambda m, inp: m.body(inp)), batch_size=6)
    torch.testing.assert_close(feats, net.eval().body(x).detach())


_WORKER = textwrap.dedent(
    """
    import sys, torch, torch.distributed as dist, torch.multiprocessing as mp
    from torch import nn
    from torch.utils.data import TensorDataset
    from domainadapt.distributed import DistContext
    from domainadapt.inference import ClassifierMetrics, Collect, Predictions, run_loop

    def run(rank, port, out):
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
        ctx = DistContext(rank=rank, world_size=2)
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
        g = torch.Generator().manual_seed(1)
        ds = TensorDataset(torch.randn(23, 4, generator=g), torch.randint(0, 3, (23,), generator=g))
        res = {"metrics": run_loop(net, ds, ClassifierMetrics(3), batch_size=4, dist=ctx),
               "pred": run_loop(net, ds, Predictions(), batch_size=4, dist=ctx),
               "feat": run_loop(net, ds, Collect(lambda m, x: m[0](x)), batch_size=5, dist=ctx)}
        torch.save(res, f"{out}/rank{rank}.pt")
        dist.destroy_process_group()

    if __name__ == "__main__":
        mp.spawn(run, args=(int(sys.argv[1]), sys.argv[2]), nprocs=2, join=True)
    """
)


def test_two_gloo_ranks_give_what_one_process_gives(tmp_path):
    proc = run_worker_script(_WORKER, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    ds = data(23, seed=1)
    one = {"metrics": run_loop(net, ds, ClassifierMetrics(3), batch_size=4), "pred": run_loop(net, ds, Predictions()),
           "feat": run_loop(net, ds, Collect(lambda m, x: m[0](x)))}
    for rank in (0, 1):
        r = torch.load(tmp_path / f"rank{rank}.pt", weights_only=False)
        assert r["metrics"]["acc"] == one["metrics"]["acc"]
        assert r["metrics"]["loss"] == pytest.approx(one["metrics"]["loss"], rel=1e-6)  # float32 batch sums
        assert torch.equal(r["pred"][0], one["pred"][0]) and torch.equal(r["pred"][1], one["pred"][1])
        torch.testing.assert_close(r["feat"], one["feat"])  # gathered back in dataset order
