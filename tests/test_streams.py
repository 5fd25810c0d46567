"""Endless batch streams: seeded order, epochs, rank slicing, checkpointed position, read-ahead workers."""

from __future__ import annotations

import pytest
import torch

from domainadapt.data.streams import InfiniteBatchStream, StreamError

from toy import toy_domain


def _take(stream, k):
    return [stream.next_indices() for _ in range(k)]


def test_each_epoch_is_a_permutation_without_the_last_partial_batch():
    stream = InfiniteBatchStream(toy_domain(n=50), 16, seed=3)
    first_epoch = torch.cat(_take(stream, 3))  # 48 of 50
    assert first_epoch.unique().numel() == 48
    second = torch.cat(_take(stream, 3))
    assert stream.epoch == 1 and second.unique().numel() == 48
    assert not torch.equal(first_epoch, second)


def test_same_seed_same_order_other_seed_other_order():
    a = torch.cat(_take(InfiniteBatchStream(toy_domain(n=64), 8, seed=1), 5))
    b = torch.cat(_take(InfiniteBatchStream(toy_domain(n=64), 8, seed=1), 5))
    c = torch.cat(_take(InfiniteBatchStream(toy_domain(n=64), 8, seed=2), 5))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_ranks_split_the_global_batch():
    d = toy_domain(n=64)
    one = InfiniteBatchStream(d, 16, seed=0)
    ranks = [InfiniteBatchStream(d, 16, seed=0, rank=r, world_size=2) for r in range(2)]
    for _ in range(6):  # crosses an epoch boundary
        assert torch.equal(one.next_indices(), torch.cat([r.next_indices() for r in ranks]))


def test_state_dict_resumes_the_same_batches():
    d = toy_domain(n=40)
    s = InfiniteBatchStream(d, 16, seed=5)
    _take(s, 3)
    state = s.state_dict()
    expected = _take(s, 4)
    fresh = InfiniteBatchStream(d, 16, seed=5)
    fresh.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(expected, _take(fresh, 4)))
    with pytest.raises(StreamError, match="batch_size"):
        InfiniteBatchStream(d, 8, seed=5).load_state_dict(state)


def test_read_ahead_workers_give_the_same_batches_and_resume():
    d = toy_domain(n=40)
    plain = InfiniteBatchStream(d, 8, seed=1)
    ahead = InfiniteBatchStream(d, 8, seed=1, num_workers=2)
    for _ in range(3):
        (xa, ya), (xb, yb) = next(plain), next(ahead)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    state = ahead.state_dict()  # consumed 3 batches, although workers have read further
    assert state["position"] == plain.state_dict()["position"]
    resumed = InfiniteBatchStream(d, 8, seed=1, num_workers=2)
    resumed.load_state_dict(state)
    for _ in range(4):
        (xa, _), (xb, _) = next(plain), next(resumed)
        assert torch.equal(xa, xb)


def test_bad_stream_arguments():
    d = toy_domain(n=20)
    with pytest.raises(StreamError, match="exceeds the 20 examples"):
        InfiniteBatchStream(d, 21, seed=0)
    with pytest.raises(StreamError, match="not divisible by the world size 3"):
        InfiniteBatchStream(d, 16, seed=0, world_size=3)
