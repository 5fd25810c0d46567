"""Run a script that spawns two gloo processes (torch.multiprocessing) and wait for it: the DDP tests' helper."""

from __future__ import annotations

import json
import os
import socket
import textwrap
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


_RUNS_WORKER = textwrap.dedent(
    """
    import json, os, sys
    import torch, torch.distributed as dist, torch.multiprocessing as mp

    def work(rank, port, out):
        # what torchrun puts in the environment; the group is joined once for all jobs (run() then uses it)
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                          WORLD_SIZE="2")
        torch.set_num_threads(1)
        dist.init_process_group("gloo", rank=rank, world_size=2)
        from domainadapt.runs import run
        from domainadapt.train import TrainConfig, UnhealthyRunError
        for name, config in json.loads(open(os.path.join(out, "jobs.json")).read()):
            try:
                run(TrainConfig.from_dict(config), os.path.join(out, name))
            except UnhealthyRunError as err:  # on_unhealthy="stop": each rank's message, for the test to read
                open(os.path.join(out, f"{name}.stopped.{rank}"), "w").write(str(err))
        dist.destroy_process_group()

    if __name__ == "__main__":
        mp.spawn(work, args=(int(sys.argv[1]), sys.argv[2]), nprocs=2, join=True)
    """
)


def run_configs_on_two_ranks(jobs: list[tuple[str, dict]], out_dir: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """Train each (name, TrainConfig dict) into out_dir/name on 2 gloo processes, in one launch (the start-up is
    most of the cost); a run stopped by its health monitor leaves out_dir/name.stopped.RANK with the message."""
    (out_dir / "jobs.json").write_text(json.dumps([list(job) for job in jobs]))
    return run_worker_script(_RUNS_WORKER, out_dir, timeout=timeout)
