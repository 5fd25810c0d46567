"""Seeded stratified train/test split: every class keeps its share in both parts."""

from __future__ import annotations

import math

import torch

from .domain import DomainError


def stratified_split(labels: torch.Tensor, test_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (train_idx, test_idx), int64 and sorted, disjoint and covering range(len(labels)).

    Each class c with n_c items puts floor(test_fraction * n_c + 0.5) of them in test, chosen by a
    private torch.Generator seeded with `seed` (the global RNG is never touched), so the split is
    a pure function of (labels, test_fraction, seed).
    """
    labels = torch.as_tensor(labels)
    if labels.ndim != 1 or labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise DomainError(f"labels must be a 1-D integer tensor, found shape {tuple(labels.shape)} {labels.dtype}")
    if not 0.0 < float(test_fraction) < 1.0:
        raise DomainError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction}")
    generator = torch.Generator().manual_seed(int(seed))
    train_parts, test_parts = [], []
    for c in torch.unique(labels, sorted=True).tolist():
        members = torch.nonzero(labels == c, as_tuple=True)[0]
        members = members[torch.randperm(members.numel(), generator=generator)]
        n_test = math.floor(test_fraction * members.numel() + 0.5)
        test_parts.append(members[:n_test])
        train_parts.append(members[n_test:])
    empty = torch.empty(0, dtype=torch.int64)
    train_idx = torch.sort(torch.cat(train_parts)).values if train_parts else empty
    test_idx = torch.sort(torch.cat(test_parts)).values if test_parts else empty
    return train_idx, test_idx
