"""One run = one directory: config.json first, metrics.jsonl and checkpoints during, result.json last.

result.json is written atomically and only after training ends, so a run directory without it is unfinished:
`run()` resumes it from its last checkpoint, and a sweep re-runs exactly the runs that have none.
"""

from __future__ import annotations

import fnmatch
import json
import os
import platform
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch

from .distributed import init_distributed, resolve_device
from .io import atomic_write_json
from .methods import MethodContext, build_method, check_method_kwargs
from .regularizers import RegularizerContext, build_regularizers, check_regularizers
from .seeding import seed_everything, set_deterministic
from .tasks import get_task
from .train.checkpoint import CheckpointError, load_checkpoint, load_model_weights
from .train.config import TrainConfig
from .train.trainer import Trainer

RESULT_FILE = "result.json"
CONFIG_FILE = "config.json"


class RunDirError(ValueError):
    """The run directory holds a different run."""


def check_inputs(config: TrainConfig) -> None:
    """Every check that needs no data: fails in milliseconds, before any domain is built."""
    config.validate()
    check_method_kwargs(config.method, config.method_kwargs)
    task = get_task(config.task)
    task.check(config, task.options(config))
    if config.init_from is not None and not Path(config.init_from).exists():
        raise CheckpointError(f"init_from: no run directory or checkpoint at {config.init_from}")
    check_regularizers(config.regularizers)


def read_result(run_dir: str | Path) -> dict[str, Any] | None:
    path = Path(run_dir) / RESULT_FILE
    if not path.exists():
        return None
    return json.loads(path.read_text())


def _claim_run_dir(run_dir: Path, config: TrainConfig) -> None:
    existing = run_dir / CONFIG_FILE
    if existing.exists():
        old = json.loads(existing.read_text())
        if old.get("config_hash") != config.config_hash():
            raise RunDirError(
                f"{run_dir} holds another run (config hash {old.get('config_hash')}, this run is "
                f"{config.config_hash()}); choose another output directory"
            )


def run(config: TrainConfig, run_dir: str | Path) -> dict[str, Any]:
    """Train one configuration into `run_dir` (resuming an unfinished run); return result.json's content."""
    run_dir = Path(run_dir)
    check_inputs(config)
    _claim_run_dir(run_dir, config)
    done = read_result(run_dir)
    if done is not None:
        return done

    device = resolve_device(config.device)  # fails early on a missing CUDA
    dist_ctx = init_distributed(device.type)
    try:
        set_deterministic(config.deterministic)
        seed_everything(config.seed)
        init_state = load_checkpoint(checkpoint_file(config.init_from)) if config.init_from is not None else None
        task_def = get_task(config.task)
        task = task_def.build(config, task_def.options(config), init_state)
        model = task.model
        freeze_parameters(model, config.freeze)
        context = MethodContext(feature_dim=task.feature_dim, num_classes=task.num_classes, total_steps=config.steps)
        method = build_method(config.method, context, **config.method_kwargs)
        regularizers = build_regularizers(config.regularizers, model, RegularizerContext(
            previous=init_state, fisher=task.fisher, no_fisher_reason=task.no_fisher_reason))
        if dist_ctx.rank > 0:
            seed_everything(config.seed + 7919 * dist_ctx.rank)  # same init everywhere, own dropout noise per rank

        if dist_ctx.is_main:
            atomic_write_json(run_dir / CONFIG_FILE, {"config": config.to_dict(), "config_hash": config.config_hash()})
        trainer = Trainer(
            config,
            model,
            method,
            source_train=task.source_train,
            target_train=task.target_train,
            eval_sets=task.eval_sets,
            run_dir=run_dir,
            dist_ctx=dist_ctx,
            regularizers=regularizers,
            measure=task.measure,
            model_info=task.model_info,
        )
        metrics = trainer.fit()
        result = {
            "config": config.to_dict(),
            "config_hash": config.config_hash(),
            "metrics": metrics,
            "steps": trainer.step,
            "train_seconds": trainer.train_seconds,
            "world_size": dist_ctx.world_size,
            "device": str(trainer.device),
            "sizes": task.sizes,
            "versions": {"torch": torch.__version__, "python": platform.python_version()},
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        if dist_ctx.is_main:
            atomic_write_json(run_dir / RESULT_FILE, result)
        dist_ctx.barrier()
        return result
    finally:
        dist_ctx.close()


def run_name(config: TrainConfig) -> str:
    safe = lambda s: "".join(c if c.isalnum() or c in "-_" else "-" for c in s)  # noqa: E731
    return f"{safe(config.method)}__{safe(config.source)}__{safe(config.target)}__s{config.seed}__{config.config_hash()}"


def sweep(configs: Iterable[TrainConfig], root: str | Path) -> list[dict[str, Any]]:
    """Run every config into root/<run_name>; finished runs (result.json present) are read, not re-run."""
    configs = list(configs)
    for config in configs:  # validate the whole grid before the first long run
        check_inputs(config)
    return run_many([(config, Path(root) / run_name(config)) for config in configs])


def freeze_parameters(model: torch.nn.Module, patterns: list[str]) -> list[str]:
    """Set requires_grad=False on parameters whose names match any fnmatch pattern (e.g. "backbone.*");
    the optimizer never sees them, so they stay bitwise unchanged. A pattern matching nothing is an error."""
    names = [n for n, _ in model.named_parameters()]
    frozen = []
    for pattern in patterns:
        hits = fnmatch.filter(names, pattern)
        if not hits:
            raise ValueError(f"freeze pattern '{pattern}' matches no parameter; names look like {names[:4]}")
        frozen += hits
    for name, p in model.named_parameters():
        if name in frozen:
            p.requires_grad_(False)
    return sorted(set(frozen))


def checkpoint_file(path: str | Path) -> Path:
    """The checkpoint a run directory (finished) or a checkpoint path names, as `init_from` reads it."""
    path = Path(path)
    if path.is_dir():
        if not (path / RESULT_FILE).exists():
            raise CheckpointError(f"{path} is not a finished run (no {RESULT_FILE}); finish it before starting from it")
        return path / "checkpoints" / "last.pt"
    return path


def _run_with_threads(config: TrainConfig, run_dir: str, threads: int) -> dict[str, Any]:
    torch.set_num_threads(threads)
    return run(config, run_dir)


def run_many(jobs: list[tuple[TrainConfig, Path]], workers: int = 1, *, verbose: bool = False) -> list[dict[str, Any]]:
    """Run (config, run directory) pairs, in order of the list; results in the same order.

    On CPU, `workers` > 1 runs them in that many spawned processes sharing the cores (each gets cpu_count // workers
    threads: small models run faster side by side than on more threads). CUDA runs go one at a time."""
    if any(c.device.startswith("cuda") for c, _ in jobs):
        workers = 1
    threads = int(os.environ.get("DOMAINADAPT_THREADS", "0")) or max(1, (os.cpu_count() or 1) // max(workers, 1))
    results = []
    if workers <= 1:
        for i, (config, run_dir) in enumerate(jobs, 1):
            results.append(_run_with_threads(config, str(run_dir), threads))
            if verbose:
                print(f"[{i}/{len(jobs)}] {Path(run_dir).name}", flush=True)
        return results
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_run_with_threads, c, str(d), threads) for c, d in jobs]
        for i, ((_, run_dir), future) in enumerate(zip(jobs, futures), 1):
            results.append(future.result())
            if verbose:
                print(f"[{i}/{len(jobs)}] {Path(run_dir).name}", flush=True)
    return results


def load_trained_model(path: str | Path) -> tuple[torch.nn.Module, TrainConfig]:
    """The model of a run directory (or a checkpoint file), weights loaded, in eval mode: the task builds it
    from the run's config and the model facts the checkpoint records (the class count), then loads the weights."""
    ckpt = Path(path) / "checkpoints" / "last.pt" if Path(path).is_dir() else Path(path)
    state = load_checkpoint(ckpt)
    config = TrainConfig.from_dict(state["config"])
    if "model_info" not in state:
        raise CheckpointError(f"{ckpt} records no model_info (written by an older domainadapt); re-run it to load it")
    task = get_task(config.task)
    model = task.build_model(config, task.options(config), state["model_info"])
    load_model_weights(model, state, ckpt)
    return model.eval(), config
