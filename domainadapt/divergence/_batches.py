"""Batch iteration shared by the feature extractors (a tensor, a DataLoader or any iterable)."""

from __future__ import annotations

from typing import Any, Iterator

from torch import Tensor


def iter_batches(data: Any, batch_size: int) -> Iterator[Any]:
    """Yield batches: slices of ``batch_size`` rows of a tensor, or the items of an iterable as they come."""
    if isinstance(data, Tensor):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        for i in range(0, data.shape[0], batch_size):
            yield data[i : i + batch_size]
    else:
        try:
            it = iter(data)
        except TypeError:
            raise TypeError(
                f"data must be a tensor, a DataLoader or an iterable of batches; got {type(data).__name__}"
            ) from None
        yield from it


def batch_inputs(batch: Any) -> Any:
    """The model input of a batch: a tensor, the first item of a (inputs, labels, ...) tuple, or a dict."""
    if isinstance(batch, (tuple, list)):
        if not batch:
            raise ValueError("got an empty batch tuple")
        return batch[0]
    return batch
