"""Checkpoints: written atomically with a content digest, read with weights_only=True, checked against the run.

File layout: a header line `domainadapt-checkpoint 2 <sha256 of the payload>` then the payload, the bytes of
`torch.save(state)`. A flipped bit anywhere in the payload fails the digest (`CheckpointError`, naming the file)
instead of loading silently different weights. `save_checkpoint(..., keep_previous=True)` first moves the
current file to `prev.pt`, so a damaged newest checkpoint can fall back to the one before (`load_latest`).
Files of format 1 (a bare torch.save, no digest) still load.
"""

from __future__ import annotations

import io
import os
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..io import atomic_write, sha256_hex

FORMAT_VERSION = 2
MAGIC = b"domainadapt-checkpoint"
PREVIOUS = "prev.pt"
REQUIRED_KEYS = ("config_hash", "step", "world_size", "modules", "optimizer", "scheduler", "scaler", "streams", "rng",
                 "loss_sums", "loss_count")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: damaged, not a checkpoint, or another run's."""


class CheckpointMismatchError(CheckpointError):
    """A sound checkpoint of another run (another config hash)."""


def save_checkpoint(path: str | Path, state: dict[str, Any], *, keep_previous: bool = False) -> None:
    """Serialise fully, then write `path` atomically; with keep_previous the file it replaces becomes prev.pt."""
    buffer = io.BytesIO()
    torch.save({"format_version": FORMAT_VERSION, **state}, buffer)  # serialise fully before touching the disk
    payload = buffer.getvalue()
    header = MAGIC + b" %d " % FORMAT_VERSION + sha256_hex(payload).encode() + b"\n"
    path = Path(path)
    if keep_previous and path.exists():
        os.replace(path, path.with_name(PREVIOUS))
    atomic_write(path, lambda f: (f.write(header), f.write(payload)))


def _payload(path: Path) -> bytes:
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        return data  # format 1: a bare torch.save zip, no digest
    end = data.find(b"\n")
    parts = data[:end].split(b" ") if end > 0 else []
    if len(parts) != 3:
        raise CheckpointError(f"checkpoint {path} is damaged (unreadable header)")
    payload = data[end + 1 :]
    if sha256_hex(payload) != parts[2].decode(errors="replace"):
        raise CheckpointError(f"checkpoint {path} is damaged: its content does not match its digest "
                              f"({len(payload)} bytes)")
    return payload


def load_checkpoint(path: str | Path, expected_hash: str | None = None, *, require_keys: bool = False) -> dict[str, Any]:
    """Load and check a checkpoint; every failure is a CheckpointError that names the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(io.BytesIO(_payload(path)), map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, ValueError, OSError) as err:
        raise CheckpointError(f"checkpoint {path} is damaged or not a torch checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(state, dict) or "format_version" not in state:
        raise CheckpointError(f"{path} is not a domainadapt checkpoint (no format_version)")
    if state["format_version"] not in (1, FORMAT_VERSION):
        raise CheckpointError(f"checkpoint {path} has format {state['format_version']}, this code reads {FORMAT_VERSION}")
    if expected_hash is not None and state.get("config_hash") != expected_hash:
        raise CheckpointMismatchError(
            f"checkpoint {path} belongs to another run (config hash {state.get('config_hash')}, this run is "
            f"{expected_hash}); use a fresh output directory or the config that wrote it"
        )
    missing = [k for k in REQUIRED_KEYS if k not in state] if require_keys else []
    if missing:
        raise CheckpointError(f"checkpoint {path} is malformed: it lacks {missing}")
    return state


def load_latest(path: str | Path, expected_hash: str | None = None) -> dict[str, Any] | None:
    """The newest usable checkpoint of a run: `path`, or prev.pt beside it when `path` is missing or damaged
    (with a warning naming both); None when there is neither. A checkpoint of another run is never skipped."""
    path = Path(path)
    previous = path.with_name(PREVIOUS)
    if not path.exists() and not previous.exists():
        return None
    try:
        return load_checkpoint(path, expected_hash, require_keys=True)
    except CheckpointMismatchError:
        raise
    except CheckpointError as err:
        if not previous.exists():
            raise
        warnings.warn(f"{err}; resuming from the previous checkpoint {previous}", stacklevel=2)
        return load_checkpoint(previous, expected_hash, require_keys=True)


def load_model_weights(model: torch.nn.Module, state: dict[str, Any], where: Any, prefix: str = "model.") -> None:
    """Load the `prefix` entries of a checkpoint's modules into `model` (a clear error when they do not fit)."""
    weights = {k[len(prefix) :]: v for k, v in state["modules"].items() if k.startswith(prefix)}
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise CheckpointError(f"the model of {where} does not fit this run's model: {err}") from None
