"""Endless, seeded, checkpointable batch streams.

Adaptation iterates a source and a target domain of different sizes, so training is counted in steps, not
epochs: each domain is an endless stream of batches. A stream's order is a pure function of (seed, epoch),
so its whole state is two integers, which go into every checkpoint; resuming continues the same batches.

Under DDP every rank draws the same *global* batch indices and keeps its own contiguous slice, so a run on
W processes sees exactly the examples a 1-process run with the same global batch sees.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from ..seeding import seed_worker


def fetch_batch(dataset: Dataset, index: torch.Tensor) -> Any:
    """Rows `index` of a dataset: one gather through `get_batch` where the dataset has it (the in-memory
    domains), else item by item, collated (any map-style dataset of (x, y) pairs)."""
    get_batch = getattr(dataset, "get_batch", None)
    if callable(get_batch):
        return get_batch(index)
    return default_collate([dataset[int(i)] for i in index])


class StreamError(ValueError):
    """A stream cannot be built or restored as asked."""


class InfiniteBatchStream:
    """Reshuffle every epoch, drop the last partial batch, never stop.

    `batch_size` is the global batch (all ranks together); each rank receives `batch_size // world_size`
    rows. A dataset with a `get_batch(index)` method (the in-memory digit domains) is read with one gather;
    any other map-style dataset is read item by item and collated.

    With `num_workers > 0` batches are read ahead by DataLoader worker processes (for datasets whose items are
    costly to decode). The index order still comes from this stream, and the stream's state counts batches
    *consumed*, not read ahead, so a checkpoint taken at any step resumes the same batches.
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        *,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        name: str = "stream",
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        n = len(dataset)  # type: ignore[arg-type]
        if n == 0:
            raise StreamError(f"{name}: the dataset is empty")
        if batch_size <= 0:
            raise StreamError(f"{name}: batch size must be positive, got {batch_size}")
        if batch_size > n:
            raise StreamError(f"{name}: batch size {batch_size} exceeds the {n} examples of the dataset")
        if batch_size % world_size:
            raise StreamError(
                f"{name}: global batch size {batch_size} is not divisible by the world size {world_size}"
            )
        self.dataset = dataset
        self.name = name
        self.n = n
        self.batch_size = batch_size
        self.seed = int(seed)
        self.rank = rank
        self.world_size = world_size
        self.local_batch_size = batch_size // world_size
        self.epoch = 0
        self.position = 0
        self._perm_epoch = -1
        self._perm: torch.Tensor | None = None
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self._ahead: Any = None  # DataLoader iterator reading ahead (num_workers > 0)

    def _clone_position(self) -> "InfiniteBatchStream":
        clone = InfiniteBatchStream.__new__(InfiniteBatchStream)
        clone.__dict__.update(self.__dict__)
        clone._ahead = None
        return clone

    def _start_read_ahead(self) -> None:
        loader = DataLoader(
            self.dataset,
            batch_sampler=_IndexSampler(self._clone_position()),
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            worker_init_fn=seed_worker,
            generator=torch.Generator().manual_seed(self.seed),
            persistent_workers=True,
        )
        self._ahead = iter(loader)

    def _permutation(self) -> torch.Tensor:
        if self._perm_epoch != self.epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            self._perm = torch.randperm(self.n, generator=g)
            self._perm_epoch = self.epoch
        assert self._perm is not None
        return self._perm

    def next_indices(self) -> torch.Tensor:
        """This rank's indices for the next batch (advances the stream)."""
        if self.position + self.batch_size > self.n:
            self.epoch += 1
            self.position = 0
        perm = self._permutation()
        start = self.position + self.rank * self.local_batch_size
        index = perm[start : start + self.local_batch_size]
        self.position += self.batch_size
        return index

    def fetch(self, index: torch.Tensor) -> Any:
        return fetch_batch(self.dataset, index)

    def __iter__(self) -> "InfiniteBatchStream":
        return self

    def __next__(self) -> Any:
        if self.num_workers <= 0:
            return self.fetch(self.next_indices())
        if self._ahead is None:
            self._start_read_ahead()
        self.next_indices()  # advance the consumed position in step with the workers
        return next(self._ahead)

    def state_dict(self) -> dict[str, int]:
        return {
            "epoch": self.epoch,
            "position": self.position,
            "seed": self.seed,
            "n": self.n,
            "batch_size": self.batch_size,
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        for key in ("seed", "n", "batch_size"):
            if int(state[key]) != getattr(self, key):
                raise StreamError(
                    f"{self.name}: checkpointed stream has {key}={state[key]}, this run has {getattr(self, key)}"
                )
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
        self._ahead = None  # read-ahead restarts from the restored position


class _IndexSampler(Sampler):
    """Endless index batches from a private copy of the stream's position (DataLoader batch_sampler)."""

    def __init__(self, stream: InfiniteBatchStream) -> None:
        self.stream = stream

    def __iter__(self):
        while True:
            yield self.stream.next_indices().tolist()
