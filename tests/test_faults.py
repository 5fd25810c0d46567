"""Nothing lost, nothing silently wrong: run locks, checkpoint integrity, NaN guards, errors instead of tracebacks,
killed sweeps and random kills (steps and mid-write) that resume to bitwise equality."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from domainadapt.cli import main
from domainadapt.io import FAULT_ENV, FILE_MODE, RunLock, RunLockedError, atomic_write_json
from domainadapt.runs import RunDirError, run
from domainadapt.train import CheckpointError, TrainConfig, load_checkpoint

from toy import write_toy_pair

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> tuple[str, str]:
    return write_toy_pair(tmp_path_factory.mktemp("toy"), n=120)


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Tiny models: one thread each."""


def cfg(toy, **kw) -> TrainConfig:
    base = dict(source=toy[0], target=toy[1], image_size=16, steps=4, batch_size=16, lr=0.05, device="cpu",
                progress=False, log_every=2, deterministic=True)
    base.update(kw)
    return TrainConfig(**base)


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def train_cmd(toy, out: Path, steps: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "domainadapt", "train", "--source", toy[0], "--target", toy[1], "--image-size", "16",
            "--steps", str(steps), "--batch-size", "16", "--lr", "0.05", "--device", "cpu", "--deterministic",
            "--no-progress", "--log-every", "5", "--out", str(out), *extra]


def same_weights(a: Path, b: Path) -> None:
    sa, sb = load_checkpoint(a / "checkpoints" / "last.pt"), load_checkpoint(b / "checkpoints" / "last.pt")
    assert sa["step"] == sb["step"]
    for k in sb["modules"]:
        assert torch.equal(sa["modules"][k], sb["modules"][k]), k
    assert json.loads((a / "result.json").read_text())["metrics"] == json.loads((b / "result.json").read_text())["metrics"]


# ------------------------------------------------------------------------------------------------ 1. one run per directory


def test_a_second_process_on_a_live_run_directory_fails_at_once(toy, tmp_path):
    out = tmp_path / "run"
    first = subprocess.Popen(train_cmd(toy, out, 4000, "--checkpoint-every", "100"), env=env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while not (out / "metrics.jsonl").exists() and time.time() < deadline and first.poll() is None:
            time.sleep(0.05)
        assert first.poll() is None, first.stderr.read().decode()[-2000:]
        second = subprocess.run(train_cmd(toy, out, 4001), env=env(), capture_output=True, text=True, timeout=120)
        assert second.returncode == 2 and "Traceback" not in second.stderr
        assert f"in use by another live process (pid {first.pid})" in second.stderr
    finally:
        first.kill()
        first.wait()
    assert json.loads((out / "config.json").read_text())["config"]["steps"] == 4000  # untouched by the second


def test_a_lock_left_by_a_dead_process_does_not_block(toy, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text("999999\n")  # the file of a killed run: the kernel released its flock
    assert run(cfg(toy), out)["steps"] == 4
    with RunLock(out / ".lock"):
        with pytest.raises(RunLockedError, match=f"pid {os.getpid()}"):
            RunLock(out / ".lock").acquire()


def test_a_stored_result_is_returned_only_for_its_own_config(toy, tmp_path):
    out = tmp_path / "run"
    run(cfg(toy, steps=4), out)
    (out / "config.json").unlink()  # even without config.json, result.json names its run
    with pytest.raises(RunDirError, match="holds another run"):
        run(cfg(toy, steps=5), out)
    assert run(cfg(toy, steps=4), out)["steps"] == 4


# ------------------------------------------------------------------------------------------------ 3. checkpoint integrity


def test_one_flipped_bit_is_caught_and_the_previous_checkpoint_resumes(toy, tmp_path):
    out, reference = tmp_path / "run", tmp_path / "ref"
    run(cfg(toy, steps=6), reference)
    run(cfg(toy, steps=6, checkpoint_every=2), out)
    (out / "result.json").unlink()
    ckpt = out / "checkpoints" / "last.pt"
    data = bytearray(ckpt.read_bytes())
    data[len(data) // 2] ^= 1  # one low bit
    ckpt.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match its digest"):
        load_checkpoint(ckpt)
    assert (out / "checkpoints" / "prev.pt").exists()
    with pytest.warns(UserWarning, match="resuming from the previous checkpoint .*prev.pt"):
        run(cfg(toy, steps=6, checkpoint_every=2), out)
    same_weights(out, reference)


def test_a_malformed_checkpoint_is_a_named_error(toy, tmp_path):
    from domainadapt.train.checkpoint import save_checkpoint

    out = tmp_path / "run"
    run(cfg(toy), out)
    (out / "result.json").unlink()
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    del state["optimizer"]
    save_checkpoint(out / "checkpoints" / "last.pt", state)
    (out / "checkpoints" / "prev.pt").unlink(missing_ok=True)
    with pytest.raises(CheckpointError, match=r"malformed: it lacks \['optimizer'\]"):
        run(cfg(toy), out)


# ------------------------------------------------------------------------------------------------ 4. NaN guards


def test_a_diverging_run_keeps_its_last_finite_checkpoint_and_writes_no_result(toy, tmp_path):
    out = tmp_path / "run"
    config = cfg(toy, steps=30, lr=1e6, checkpoint_every=1, log_every=10)
    for _ in range(2):  # the re-run meets the same divergence, and still finds a finite checkpoint
        with pytest.raises(FloatingPointError, match="non-finite"):
            run(config, out)
        state = load_checkpoint(out / "checkpoints" / "last.pt")
        assert all(bool(torch.isfinite(t).all()) for t in state["modules"].values() if t.is_floating_point())
        assert not (out / "result.json").exists()


def test_non_finite_final_metrics_write_no_result_and_result_files_are_strict_json(toy, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--source", toy[0], "--target", toy[1], "--image-size", "16", "--batch-size", "16",
                 "--lr", "1e10", "--steps", "1", "--device", "cpu", "--no-progress", "--out", str(out)])
    assert code == 2 and "non-finite" in capsys.readouterr().err
    assert not (out / "result.json").exists()
    with pytest.raises(ValueError):
        atomic_write_json(tmp_path / "x.json", {"loss": float("nan")})
    assert not (tmp_path / "x.json").exists()


# ------------------------------------------------------------------------------------------------ 5. errors, not tracebacks


@pytest.mark.parametrize("args, message", [
    (["--method", "dann", "--method-arg", "weight=abc"], "method 'dann': option 'weight' must be a number, got 'abc'"),
    (["--method", "dann", "--method-arg", "gamma=[1,2]"], "method 'dann': option 'gamma' must be a number"),
    (["--method", "dann", "--method-arg", "hidden=abc"], "method 'dann': option 'hidden' must be a list"),
    (["--backbone-arg", "batch_norm=3"], "backbone 'digits_cnn': option 'batch_norm' must be true or false"),
    (["--regularizers", '{"ewc": {"lam": "x"}}'], "regularizer 'ewc': lam must be a number"),
])
def test_bad_option_values_are_one_line_before_the_directory_is_claimed(toy, tmp_path, capsys, args, message):
    out = tmp_path / "run"
    base = ["train", "--source", toy[0], "--target", toy[1], "--image-size", "16", "--steps", "2", "--batch-size", "16",
            "--device", "cpu", "--no-progress", "--out", str(out)]
    assert main([*base, *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not out.exists()  # nothing claimed: the corrected command runs
    assert main(base) == 0


def test_config_files_disks_and_world_sizes_fail_with_one_line(toy, tmp_path, capsys, monkeypatch):
    base = ["train", "--source", toy[0], "--target", toy[1], "--image-size", "16", "--steps", "2", "--batch-size", "16",
            "--device", "cpu", "--no-progress"]
    listing = tmp_path / "list.json"
    listing.write_text("[1, 2]")
    assert main([*base, "--config", str(listing), "--out", str(tmp_path / "a")]) == 2
    assert "must hold a JSON object of TrainConfig fields, not a list" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main([*base, "--out", str(blocker / "run")]) == 2  # a path under a file: not a directory
    assert "Not a directory" in capsys.readouterr().err

    import domainadapt.io as dio

    def full_disk(*a, **k):
        raise OSError(28, "No space left on device", "result.json")

    monkeypatch.setattr(dio, "atomic_write", full_disk)
    import domainadapt.runs as runs
    monkeypatch.setattr(runs, "atomic_write_json", lambda *a, **k: full_disk())
    assert main([*base, "--out", str(tmp_path / "full")]) == 2
    assert "No space left on device" in capsys.readouterr().err
    monkeypatch.undo()

    monkeypatch.setenv("WORLD_SIZE", "3")
    assert main([*base, "--out", str(tmp_path / "w")]) == 2
    assert "batch_size 16 is not divisible by 3 processes" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()  # checked before any data or directory


# ------------------------------------------------------------------------------------------------ 6. smaller


def test_files_are_written_with_the_umask_and_stale_temp_files_are_cleaned(toy, tmp_path):
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    stale = out / "checkpoints" / ".last.pt.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    run(cfg(toy), out)
    assert not stale.exists()
    for name in ("result.json", "config.json", "checkpoints/last.pt"):
        assert (out / name).stat().st_mode & 0o777 == FILE_MODE, name


def test_damaged_results_and_unfinished_init_from_are_named(toy, tmp_path):
    out = tmp_path / "run"
    run(cfg(toy), out)
    text = (out / "result.json").read_text()
    (out / "result.json").write_text(text[: len(text) // 2])
    with pytest.raises(RunDirError, match=f"{out / 'result.json'} is damaged"):
        run(cfg(toy), out)
    (out / "result.json").unlink()  # now unfinished: its checkpoint cannot start another run
    with pytest.raises(CheckpointError, match="is not a finished run"):
        run(cfg(toy, init_from=str(out / "checkpoints" / "last.pt")), tmp_path / "ft")


def test_the_cli_honours_domainadapt_threads(toy, tmp_path, monkeypatch):
    monkeypatch.setenv("DOMAINADAPT_THREADS", "1")
    torch.set_num_threads(2)
    assert main(["train", "--source", toy[0], "--target", toy[1], "--image-size", "16", "--steps", "1",
                 "--batch-size", "16", "--device", "cpu", "--no-progress", "--out", str(tmp_path / "r")]) == 0
    assert torch.get_num_threads() == 1


# ------------------------------------------------------------------------------------------------ killed sweeps


SWEEP = """
import sys
from pathlib import Path
from domainadapt.runs import run_many
from domainadapt.train import TrainConfig
source, target, root, steps = sys.argv[1], sys.argv[2], Path(sys.argv[3]), [int(s) for s in sys.argv[4].split(",")]
jobs = [(TrainConfig(source=source, target=target, image_size=16, steps=n, batch_size=16, device="cpu", progress=False,
                     checkpoint_every=50, seed=i), root / f"run{i}") for i, n in enumerate(steps)]
if __name__ == "__main__":  # the spawned workers import this file
    run_many(jobs, workers=2)
"""


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_killed_sweep_leaves_no_live_worker_and_reruns_only_what_is_missing(toy, tmp_path):
    script = tmp_path / "sweep.py"
    script.write_text(SWEEP)
    root = tmp_path / "runs"
    cmd = [sys.executable, str(script), toy[0], toy[1], str(root), "2,1500,1500"]
    sweep = subprocess.Popen(cmd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while not ((root / "run0" / "result.json").exists() and (root / "run1" / "metrics.jsonl").exists()) \
            and time.time() < deadline and sweep.poll() is None:
        time.sleep(0.05)
    workers = _children(sweep.pid)
    assert sweep.poll() is None and workers, f"the sweep ended with {sweep.poll()}"
    finished = (root / "run0" / "result.json").stat().st_mtime_ns
    sweep.send_signal(signal.SIGKILL)
    sweep.wait()
    deadline = time.time() + 15
    while any(_alive(w) for w in workers) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(_alive(w) for w in workers), [w for w in workers if _alive(w)]
    assert not (root / "run1" / "result.json").exists()

    # re-run with the same grid: run0 is read, not re-trained; the others resume and finish
    done = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (root / "run0" / "result.json").stat().st_mtime_ns == finished
    assert all((root / f"run{i}" / "result.json").exists() for i in range(3))


# ------------------------------------------------------------------------------------------------ random kills


def _log_lines(out: Path) -> int:
    try:
        return len((out / "metrics.jsonl").read_text().splitlines())
    except FileNotFoundError:
        return 0


def _kill_and_resume(toy, tmp_path, kills: int, steps: int, seed: int) -> None:
    """`kills` interruptions, alternately half-way through the n-th atomic write of the process (n random in 1..4:
    config.json or a checkpoint) and by SIGKILL at a random moment after training has visibly advanced; every one
    must interrupt an unfinished run; then the run completes and equals one never stopped."""
    rng = random.Random(seed)
    out, reference = tmp_path / "killed", tmp_path / "reference"
    extra = ("--checkpoint-every", "3")
    interrupted = 0
    for k in range(kills):
        if k % 2 == 0:
            fault = {FAULT_ENV: str(rng.randint(1, 4))}
            done = subprocess.run(train_cmd(toy, out, steps, *extra), env={**env(), **fault}, capture_output=True,
                                  text=True, timeout=300)
            assert done.returncode == 137, done.stderr[-2000:]
        else:
            before = _log_lines(out)
            proc = subprocess.Popen(train_cmd(toy, out, steps, *extra), env=env(), stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            deadline = time.time() + 120
            while _log_lines(out) <= before and time.time() < deadline and proc.poll() is None:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.2))
            proc.send_signal(signal.SIGKILL)
            assert proc.wait() == -signal.SIGKILL
        assert not (out / "result.json").exists()
        interrupted += 1
    assert interrupted == kills
    subprocess.run(train_cmd(toy, out, steps, *extra), env=env(), check=True, capture_output=True, timeout=300)
    subprocess.run(train_cmd(toy, reference, steps), env=env(), check=True, capture_output=True, timeout=300)
    same_weights(out, reference)
    assert not list(out.rglob("*.tmp"))


def test_random_kills_resume_to_bitwise_equality(toy, tmp_path):
    _kill_and_resume(toy, tmp_path, kills=4, steps=400, seed=0)


@pytest.mark.slow
def test_twenty_random_kills_resume_to_bitwise_equality(toy, tmp_path):
    _kill_and_resume(toy, tmp_path, kills=20, steps=2000, seed=1)
