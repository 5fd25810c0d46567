"""Fixtures shared by several test files."""

from __future__ import annotations

import pytest
import torch

from test_alignment_methods import _train_moons


@pytest.fixture()
def one_torch_thread():
    """Run a test on one torch thread (tiny models run faster so on a shared machine), restoring the count after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def moons_source_only(tmp_path_factory):
    """Source-only target accuracy on rotated two moons, seeds 0 and 1 (tests/test_alignment_methods.py's setting),
    shared by every method's moons test (measured 0.598 / 0.602)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return [_train_moons("source_only", s, tmp_path_factory.mktemp("so")) for s in (0, 1)]
    finally:
        torch.set_num_threads(threads)
