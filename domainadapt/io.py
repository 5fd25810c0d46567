"""Files that survive crashes and second processes: atomic writes, a run-directory lock, digests.

`atomic_write` writes a temp file in the same folder, fsyncs it and renames it onto the target, so a crash
leaves either the old file or the new one, never half of one; the new file gets the usual permissions
(0666 less the umask), not mkstemp's 0600. `RunLock` is an advisory lock (fcntl.flock) on a file in a run
directory, held for the whole run and released by the kernel when its process dies, so a lock left by a killed
process is never mistaken for a live one. `clean_stale_temp_files` removes the temp files killed writes left.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

_UMASK = os.umask(0)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK
TEMP_SUFFIX = ".tmp"
FAULT_ENV = "DOMAINADAPT_FAULT_AT_WRITE"  # tests: "N" kills the process half-way through the N-th atomic write
_writes = 0


class RunLockedError(OSError):
    """Another live process holds the run directory."""


def _maybe_fault(f: Any) -> None:
    """Fault injection for the crash tests: with DOMAINADAPT_FAULT_AT_WRITE=N the N-th atomic write of this
    process stops half-way (the temp file is flushed, never renamed) and the process dies as if SIGKILLed."""
    global _writes
    at = os.environ.get(FAULT_ENV)
    if not at:
        return
    _writes += 1
    if _writes == int(at):
        f.flush()
        f.truncate(f.tell() // 2)
        os.fsync(f.fileno())
        os._exit(137)


def atomic_write(path: str | Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Call `write(fileobj)` on a temp file in the same directory, fsync, then os.replace onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, mode) as f:
            write(f)
            _maybe_fault(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text), mode="w")


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Strict JSON (NaN and infinities are refused, not written as the non-JSON tokens NaN / Infinity)."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def clean_stale_temp_files(folder: str | Path) -> list[Path]:
    """Remove `.NAME.*.tmp` files that killed atomic writes left in `folder` (call it holding the folder's lock)."""
    folder = Path(folder)
    removed = []
    if folder.is_dir():
        for p in folder.glob(f".*{TEMP_SUFFIX}"):
            try:
                p.unlink()
                removed.append(p)
            except FileNotFoundError:
                pass
    return removed


class RunLock:
    """An exclusive, non-blocking lock on `path` (a `.lock` file in a run directory) for the life of a run.

    The holder's PID is written into the file for the error message; the lock itself is the kernel's flock,
    released when the holder exits or is killed, so a stale file of a dead process never blocks a re-run."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise RunLockedError(f"{self.path.parent} is in use by another live process (pid {holder}); wait for it "
                                 "or choose another output directory") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()
