"""Checkpoints: written atomically, read with weights_only=True, checked against the run that reads them."""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..io import atomic_write

FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: damaged, not a checkpoint, or another run's."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    payload = {"format_version": FORMAT_VERSION, **state}
    buffer = io.BytesIO()
    torch.save(payload, buffer)  # serialise fully before touching the disk
    atomic_write(path, lambda f: f.write(buffer.getvalue()))


def load_checkpoint(path: str | Path, expected_hash: str | None = None) -> dict[str, Any]:
    """Load and check a checkpoint; every failure is a CheckpointError that names the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, ValueError, OSError) as err:
        raise CheckpointError(f"checkpoint {path} is damaged or not a torch checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(state, dict) or "format_version" not in state:
        raise CheckpointError(f"{path} is not a domainadapt checkpoint (no format_version)")
    if state["format_version"] != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format {state['format_version']}, this code reads {FORMAT_VERSION}")
    if expected_hash is not None and state.get("config_hash") != expected_hash:
        raise CheckpointError(
            f"checkpoint {path} belongs to another run (config hash {state.get('config_hash')}, this run is "
            f"{expected_hash}); use a fresh output directory or the config that wrote it"
        )
    return state


def load_model_weights(model: torch.nn.Module, state: dict[str, Any], where: Any, prefix: str = "model.") -> None:
    """Load the `prefix` entries of a checkpoint's modules into `model` (a clear error when they do not fit)."""
    weights = {k[len(prefix) :]: v for k, v in state["modules"].items() if k.startswith(prefix)}
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise CheckpointError(f"the model of {where} does not fit this run's model: {err}") from None
