"""AllReduceBatchNorm: a drop-in BatchNorm (same parameters, buffers, single-process numbers); its 2-process
equality with one process is tests/test_trainer_claims.py::test_two_gloo_processes_train_what_one_process_trains."""

from __future__ import annotations

import torch
from torch import nn

from domainadapt.train.sync_batchnorm import AllReduceBatchNorm, convert_to_all_reduce_batchnorm


def test_conversion_keeps_parameters_buffers_and_single_process_numbers():
    torch.manual_seed(0)
    ref = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(64, 5),
                        nn.BatchNorm1d(5))
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(64, 5),
                        nn.BatchNorm1d(5))
    net.load_state_dict(ref.state_dict())
    weight = net[1].weight
    net = convert_to_all_reduce_batchnorm(net)
    assert isinstance(net[1], AllReduceBatchNorm) and isinstance(net[5], AllReduceBatchNorm)
    assert net[1].weight is weight and list(net.state_dict()) == list(ref.state_dict())
    x = torch.randn(8, 3, 6, 6)
    for mode in ("train", "eval"):
        getattr(ref, mode)(), getattr(net, mode)()
        torch.testing.assert_close(net(x), ref(x))
    torch.testing.assert_close(net[1].running_var, ref[1].running_var)
    assert int(net[5].num_batches_tracked) == int(ref[5].num_batches_tracked) == 1
