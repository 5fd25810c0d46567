"""One run = one directory: config.json first, metrics.jsonl and checkpoints during, result.json last.

result.json is written atomically and only after training ends, so a run directory without it is unfinished:
`run()` resumes it from its last checkpoint, and a sweep re-runs exactly the runs that have none.
"""

from __future__ import annotations

import ctypes
import fnmatch
import hashlib
import inspect
import json
import os
import platform
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import __version__
from .data.unlabelled import UnlabelledInputs
from .distributed import init_distributed, resolve_device
from .io import RunLock, atomic_write_json, clean_stale_temp_files
from .methods import MethodContext, MethodError, build_method, check_method_kwargs, get_method_class
from .models.classifier import fresh_copy
from .models.registry import backbone_modality, check_image_backbone
from .regularizers import RegularizerContext, build_regularizers, check_regularizers
from .seeding import seed_everything, set_deterministic
from .tasks import get_task
from .train.checkpoint import CheckpointError, load_checkpoint, load_model_weights
from .train.config import ConfigError, TrainConfig
from .train.selection import SelectionData, SelectionError, build_validators, validators_need_source
from .train.trainer import Trainer

RESULT_FILE = "result.json"
CONFIG_FILE = "config.json"
LOCK_FILE = ".lock"


class RunDirError(ValueError):
    """The run directory holds a different run."""


def check_inputs(config: TrainConfig, init_from_pending: bool = False) -> None:
    """Every check that needs no data: fails in milliseconds, before any domain is built or directory claimed.
    `init_from_pending`: the init_from run is made earlier in the same sweep, so it need not exist yet."""
    config.validate()
    check_method_kwargs(config.method, config.method_kwargs)
    if get_method_class(config.method).needs_trained_model and config.init_from is None:
        raise MethodError(f"method '{config.method}' adapts a trained model: set init_from to a finished source "
                          "run (its directory or checkpoint), e.g. a source_only run of the same pair")
    task = get_task(config.task)
    build_validators(config.validators)  # an unknown validator or option fails here, named
    if config.validators and not task.classifies:
        raise SelectionError(f"validators score a classifier's predictions; task '{config.task}' trains none")
    if config.validators and validators_need_source(config.validators) and not task.holds_out_source:
        raise SelectionError(f"validators {sorted(config.validators)}: one reads held-out source rows, which task "
                             f"'{config.task}' does not hold out; use the target-only ones (`domainadapt validators`)")
    task.check(config, task.options(config))
    if backbone_modality(config.backbone) == "image":  # any task's image backbone: its options, by signature
        check_image_backbone(config.backbone, config.backbone_kwargs, config.image_size)
    if config.init_from is not None and not init_from_pending:
        if not Path(config.init_from).exists():
            raise CheckpointError(f"init_from: no run directory or checkpoint at {config.init_from}")
        checkpoint_file(config.init_from)  # a run directory (or its checkpoint) must be finished
    check_regularizers(config.regularizers)


def read_result(run_dir: str | Path) -> dict[str, Any] | None:
    """The stored result.json of a run directory, or None; a damaged file is an error naming it."""
    path = Path(run_dir) / RESULT_FILE
    if not path.exists():
        return None
    try:
        result = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RunDirError(f"{path} is damaged ({err}); delete it to train the run again") from None
    if not isinstance(result, dict) or "metrics" not in result:
        raise RunDirError(f"{path} is not a result file of domainadapt; delete it to train the run again")
    return result


def _started(run_dir: Path) -> bool:
    """Has anything of a run been written here beyond config.json (a checkpoint, a log, a result)?"""
    return any((run_dir / name).exists() for name in (RESULT_FILE, "metrics.jsonl", "checkpoints/last.pt",
                                                       "checkpoints/prev.pt"))


def _check_run_dir(run_dir: Path, config: TrainConfig) -> None:
    """The directory is this config's run, or empty, or a start that wrote nothing but config.json (reclaimed)."""
    result = read_result(run_dir)  # a damaged result.json is an error naming it
    hashes = [result.get("config_hash")] if result is not None else []
    if (run_dir / CONFIG_FILE).exists() and _started(run_dir):
        try:
            hashes.append(json.loads((run_dir / CONFIG_FILE).read_text()).get("config_hash"))
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            hashes.append("unreadable")
    for other in hashes:
        if other != config.config_hash():
            raise RunDirError(f"{run_dir} holds another run (config hash {other}, this run is {config.config_hash()}); "
                              "choose another output directory")


def _check_world_size(config: TrainConfig) -> None:
    """Under torchrun: the global batch must split over the processes and micro-steps (before any data is read)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if config.batch_size % (world * config.grad_accum):
        raise ConfigError(f"batch_size {config.batch_size} is not divisible by {world} processes × grad_accum "
                          f"{config.grad_accum}")


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def run(config: TrainConfig, run_dir: str | Path) -> dict[str, Any]:
    """Train one configuration into `run_dir` (resuming an unfinished run); return result.json's content.

    The directory is locked for the whole run (rank 0 holds it), so a second process on it fails at once; a stored
    result is returned only when it is this config's; temp files of killed writes are removed."""
    run_dir = Path(run_dir)
    check_inputs(config)
    _check_world_size(config)
    lock = RunLock(run_dir / LOCK_FILE) if is_main_process() else None
    if lock is not None:
        lock.acquire()
    try:
        return _run_locked(config, run_dir)
    finally:
        if lock is not None:
            lock.release()


def method_source_hash(name: str) -> str | None:
    """sha256 (first 12 hex) of the source of the module that defines method `name` (None: no source to read),
    recorded in result.json so a stored result of code that has changed since is noticed."""
    try:
        source = inspect.getsource(inspect.getmodule(get_method_class(name)))
    except (MethodError, OSError, TypeError):
        return None
    return hashlib.sha256(source.encode()).hexdigest()[:12]


def _warn_if_method_changed(done: dict[str, Any], config: TrainConfig, run_dir: Path) -> None:
    stored = (done.get("versions") or {}).get("method_source")
    current = method_source_hash(config.method)
    if stored is not None and current is not None and stored != current:
        warnings.warn(f"run {run_dir}: the code of method '{config.method}' changed since this run (source hash "
                      f"{stored}, now {current}); its stored result is returned — re-run with a fresh directory, "
                      "or bump the method's `revision` if the change alters what it computes", stacklevel=3)


def _run_locked(config: TrainConfig, run_dir: Path) -> dict[str, Any]:
    _check_run_dir(run_dir, config)
    done = read_result(run_dir)
    if done is not None:
        _warn_if_method_changed(done, config, run_dir)
        return done
    if is_main_process():
        for folder in (run_dir, run_dir / "checkpoints"):
            clean_stale_temp_files(folder)

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
        head = getattr(model, "head", None)
        context = MethodContext(feature_dim=task.feature_dim, num_classes=task.num_classes, total_steps=config.steps,
                                micro_steps=config.grad_accum,
                                new_head=(lambda: fresh_copy(head)) if isinstance(head, nn.Module) else None)
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
            selection=SelectionData(
                target=_unlabelled(task.target_train if task.target_train_eval is None else task.target_train_eval), source_val=task.source_val,
                source_train=_unlabelled(task.source_train)) if config.validators else None,
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
            "classes": list(task.class_names),  # label i's name (predict, export)
            "input": task.input_contract,  # what the model takes (export's model card, predict)
            "health": trainer.health_codes,
            # {validator: {"step", "score"}}: the checkpoint each validator chose (checkpoints/best-<name>.pt)
            **({"selected": trainer.selector.selected()} if trainer.selector is not None else {}),  # health codes that fired (train/health.py); None: on_unhealthy="off"
            "versions": {"torch": torch.__version__, "python": platform.python_version(), "domainadapt": __version__,
                         "method_source": method_source_hash(config.method)},  # sha256[:12] of the method's module
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        if dist_ctx.is_main:
            atomic_write_json(run_dir / RESULT_FILE, result)
        dist_ctx.barrier()
        return result
    finally:
        dist_ctx.close()


def _unlabelled(dataset: Any) -> UnlabelledInputs | None:
    return None if dataset is None else UnlabelledInputs(dataset)


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
    # a run directory, or a checkpoint inside one (RUN/checkpoints/*.pt of a run that wrote its config.json)
    run_dir = path if path.is_dir() else path.parent.parent if path.parent.name == "checkpoints" else None
    in_run = run_dir is not None and (path.is_dir() or (run_dir / CONFIG_FILE).exists())
    if in_run and not (run_dir / RESULT_FILE).exists():
        raise CheckpointError(f"{run_dir} is not a finished run (no {RESULT_FILE}); finish it before starting from it")
    return path / "checkpoints" / "last.pt" if path.is_dir() else path


def _die_with_parent(parent: int) -> None:
    """Sweep-worker initializer: the worker ends when the process that started it does (SIGKILLed included),
    so a killed sweep leaves no orphan training a run beside its re-run. Linux: the kernel's parent-death
    signal; elsewhere (and as a backstop) a daemon thread that watches for a new parent."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the signal was set
        os._exit(1)

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(1)
            time.sleep(0.5)

    threading.Thread(target=watch, daemon=True, name="die-with-parent").start()


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
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"), initializer=_die_with_parent,
                             initargs=(os.getpid(),)) as pool:
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
