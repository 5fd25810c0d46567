"""A dataset's inputs without its labels: what unsupervised code (a method's periodic pass over the target set,
a validator) is handed, so that target labels are out of its reach by construction, not by convention."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from .streams import fetch_batch


class UnlabelledInputs:
    """Rows of `dataset` as inputs only: `inputs(index)` gives the batch of rows `index`, `len()` the row count.
    The dataset is held in a closure, not an attribute, and nothing here returns a label."""

    __slots__ = ("_read", "_length")

    def __init__(self, dataset: Dataset) -> None:
        length = len(dataset)  # type: ignore[arg-type]

        def read(index: torch.Tensor) -> Any:
            x, _ = fetch_batch(dataset, index)
            return x

        object.__setattr__(self, "_read", read)
        object.__setattr__(self, "_length", length)

    def __len__(self) -> int:
        return self._length

    def inputs(self, index: torch.Tensor | list[int]) -> Any:
        """The inputs (a tensor, or a dict of token tensors) of rows `index`."""
        return self._read(torch.as_tensor(index, dtype=torch.long))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("UnlabelledInputs is read-only")
