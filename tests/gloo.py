"""Run a script that spawns two gloo processes (torch.multiprocessing) and wait for it: the DDP tests' helper."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_worker_script(source: str, out_dir: Path, timeout: int = 180) -> subprocess.CompletedProcess:
    """Write `source` to out_dir/worker.py and run it as `worker.py PORT OUT_DIR` (one torch thread each)."""
    script = out_dir / "worker.py"
    script.write_text(source)
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, str(script), str(free_port()), str(out_dir)], env=env, capture_output=True,
                          text=True, timeout=timeout)
