"""Endless, seeded, checkpointable batch streams.

Adaptation iterates a source and a target domain of different sizes, so training is counted in steps, not
epochs: each domain is an endless stream of batches. A stream's order is a pure function of (seed, epoch),
so its whole state is two integers, which go into every checkpoint; resuming continues the same batches.

Under DDP every rank draws the same *global* batch indices and keeps its own contiguous slice, so a run on
W processes sees exactly the examples a 1-process run with the same global batch sees.

Random augmentation stays resumable: a dataset that declares `seeded_items = True` (the lazy ImageFileDomain)
receives `(index, draw_seed)` pairs, draw_seed = a hash of (stream seed, epoch, position in the epoch), and runs
its augmentation under that seed; so the crops are a function of the stream's two-integer state, the same in
the training process and in any read-ahead worker. A dataset with `sample_weights` (class-balanced sampling)
gets each epoch's order as n seeded draws with replacement ∝ those weights instead of a permutation.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from ..seeding import seed_worker
from .image_files import mix64


def fetch_batch(dataset: Dataset, index: torch.Tensor | list) -> Any:
    """Rows `index` of a dataset: one gather through `get_batch` where the dataset has it (the in-memory
    domains), else item by item, collated (any map-style dataset of (x, y) pairs; `index` may then be a list of
    `(index, draw_seed)` pairs for a dataset with `seeded_items`)."""
    get_batch = getattr(dataset, "get_batch", None)
    if callable(get_batch):
        return get_batch(index)
    if isinstance(index, list):
        return default_collate([dataset[item] for item in index])
    return default_collate([dataset[int(i)] for i in index])


def draw_seed(stream_seed: int, epoch: int, position: int) -> int:
    """The augmentation seed of the item at `position` of epoch `epoch` of a stream (rank-independent)."""
    return mix64(stream_seed, epoch, position)


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
        self.seeded_items = bool(getattr(dataset, "seeded_items", False)) and not callable(
            getattr(dataset, "get_batch", None))

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
            weights = getattr(self.dataset, "sample_weights", None)
            if weights is not None:  # class-balanced: n seeded draws with replacement, a pure function of the epoch
                self._perm = torch.multinomial(torch.as_tensor(weights, dtype=torch.float64), self.n,
                                               replacement=True, generator=g)
            else:
                self._perm = torch.randperm(self.n, generator=g)
            self._perm_epoch = self.epoch
        assert self._perm is not None
        return self._perm

    def _advance(self) -> tuple[torch.Tensor, int]:
        """(this rank's indices for the next batch, the epoch position of its first row); advances the stream."""
        if self.position + self.batch_size > self.n:
            self.epoch += 1
            self.position = 0
        perm = self._permutation()
        start = self.position + self.rank * self.local_batch_size
        index = perm[start : start + self.local_batch_size]
        self.position += self.batch_size
        return index, start

    def next_indices(self) -> torch.Tensor:
        """This rank's indices for the next batch (advances the stream)."""
        return self._advance()[0]

    def next_items(self) -> torch.Tensor | list[tuple[int, int]]:
        """What the dataset is asked for next: the indices, or (index, draw_seed) pairs for seeded datasets."""
        index, start = self._advance()
        if not self.seeded_items:
            return index
        return [(i, draw_seed(self.seed, self.epoch, start + j)) for j, i in enumerate(index.tolist())]

    def fetch(self, index: torch.Tensor | list) -> Any:
        return fetch_batch(self.dataset, index)

    def __iter__(self) -> "InfiniteBatchStream":
        return self

    def __next__(self) -> Any:
        return self.next_with_index()[0]

    def next_with_index(self) -> tuple[Any, torch.Tensor]:
        """The next batch and the dataset indices of its rows (for methods that keep per-example state)."""
        if self.num_workers <= 0:
            items = self.next_items()
            index = items if isinstance(items, torch.Tensor) else torch.tensor([i for i, _ in items])
            return self.fetch(items), index
        if self._ahead is None:
            self._start_read_ahead()
        index = self.next_indices()  # advance the consumed position in step with the workers
        try:
            return next(self._ahead), index
        except Exception as err:  # a worker's error arrives with its traceback in the message: keep the last line
            raise _one_line(err) from None

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
            items = self.stream.next_items()
            yield items if isinstance(items, list) else items.tolist()


def _one_line(err: Exception) -> Exception:
    """The error a DataLoader worker raised, as its own type with its own message (without the traceback text)."""
    text = str(err)
    if not text.startswith("Caught "):
        return err
    last = text.rstrip().splitlines()[-1]
    message = last.split(": ", 1)[1] if ": " in last and last.split(": ", 1)[0].endswith(type(err).__name__) else last
    try:
        return type(err)(message)
    except Exception:  # noqa: BLE001 - an exception type that cannot be built from one string: keep it whole
        return err
