"""The shared trainer: one loop for every method, on CPU or GPU, AMP, DDP, accumulation, exact resume.

Step-based (adaptation pairs two endless streams of different lengths). One step = `grad_accum` micro-steps,
each ONE forward of the concatenated source+target micro-batch; the method turns that forward into named
losses; the trainer sums, backpropagates (scaled for fp16), clips, steps and schedules. The hot loop does not
synchronise with the host: losses are summed on the device and read only every `log_every` steps.

A checkpoint holds model + method modules, optimizer, scheduler, grad scaler, every RNG (of every rank), the
stream positions, the step and the running loss sums, so a killed run resumed from it ends bitwise equal (CPU,
deterministic mode) to a run that was never stopped.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset

from ..data.streams import InfiniteBatchStream
from ..data.unlabelled import UnlabelledInputs
from ..distributed import DistContext, resolve_device
from ..inference import ClassifierMetrics, Measure, autocast, run_loop, to_device
from ..methods.base import Method, TargetPass
from .config import TrainConfig
from .health import HealthEvent, HealthMonitor, UnhealthyRunError, method_domain_weight, parse_health_options
from .log_window import LogWindow
from .logging import MetricsLogger
from .param_groups import build_optimizer, build_param_groups, group_log_names, logged_learning_rates
from .schedules import lr_factor
from .selection import CheckpointSelector, SelectionData, build_validators
from .step import StepModule, set_train_mode
from .trainer_state import TrainerCheckpoints
from .updates import Batch, Update, plan_updates
from .sync_batchnorm import convert_to_all_reduce_batchnorm
from .unfreezing import GradualUnfreezing


class Trainer(TrainerCheckpoints):
    """Train `model` with `method` on a source and a target training set; evaluate on named sets.

    `run_dir` receives metrics.jsonl and checkpoints/last.pt (rank 0 writes). `fit()` resumes from
    checkpoints/last.pt when it exists and returns the final metrics.
    """

    def __init__(
        self,
        config: TrainConfig,
        model: nn.Module,
        method: Method,
        *,
        source_train: Dataset | None,
        target_train: Dataset | None,
        eval_sets: dict[str, Dataset],
        run_dir: str | Path,
        dist_ctx: DistContext | None = None,
        regularizers: nn.ModuleDict | None = None,
        measure: Callable[[], Measure] = ClassifierMetrics,
        model_info: dict[str, int] | None = None,
        selection: SelectionData | None = None,
    ) -> None:
        self.config = config.validate()
        self.measure = measure  # the task's measure of an eval set (classifier metrics, or masked-LM loss)
        self.model_info = dict(model_info or {})  # what the task needs to rebuild the model (num_classes)
        self.config_hash = config.config_hash()
        self.dist = dist_ctx or DistContext()
        self.device = resolve_device(config.device, self.dist.local_rank)
        self.run_dir = Path(run_dir)
        self.checkpoint_path = self.run_dir / "checkpoints" / "last.pt"
        self.eval_sets = eval_sets

        if config.channels_last:
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.step_module = StepModule(model, method, regularizers).to(self.device)
        self.model = model
        self.method = method
        if self.dist.enabled and config.sync_batchnorm:
            # BatchNorm over the global batch, so N processes train what 1 process would: torch's SyncBatchNorm on
            # CUDA; on CPU (gloo) its kernels do not run, so statistics are all-reduced by AllReduceBatchNorm
            if self.device.type == "cuda":
                self.step_module = nn.SyncBatchNorm.convert_sync_batchnorm(self.step_module)
            else:
                self.step_module = convert_to_all_reduce_batchnorm(self.step_module)
            self.model, self.method = self.step_module.model, self.step_module.method
            model = self.model
        self.engine: nn.Module = self._wrap_ddp() if self.dist.enabled else self.step_module

        micro_batch = config.batch_size // config.grad_accum
        world = self.dist.world_size
        self.streams: dict[str, InfiniteBatchStream] = {}
        if method.uses_source:
            self.streams["source"] = InfiniteBatchStream(
                source_train, micro_batch, seed=2 * config.seed, rank=self.dist.rank, world_size=world, name="source",
                num_workers=config.num_workers, pin_memory=self.device.type == "cuda",
            )
        if method.uses_target:
            self.streams["target"] = InfiniteBatchStream(
                target_train, micro_batch, seed=2 * config.seed + 1, rank=self.dist.rank, world_size=world, name="target",
                num_workers=config.num_workers, pin_memory=self.device.type == "cuda",
            )

        self.optimizer = build_optimizer(config, build_param_groups(
            model, method, config.lr, lr_mults=config.lr_mults, layer_lr_decay=config.layer_lr_decay))
        # the optimizer updates of one step: one of every parameter, or the method's phases (train/updates.py)
        self.updates: list[Update] = plan_updates(self.method, self.model, self.optimizer)
        # the whole target training set, inputs only, for a method's periodic work (Method.refresh)
        self._target_inputs = (UnlabelledInputs(target_train) if target_train is not None
                               and (method.refresh_every > 0 or not method.trains) else None)
        # test-time protocol (Method.online_accuracy): [correct, scored] over every target batch, predicted in the
        # training forward before the update on it; the trainer reads the labels, the method never does
        self.online_counts = torch.zeros(2, dtype=torch.long, device=self.device)
        # named once, from the groups as built (a resumed optimizer's groups are positional): metrics.jsonl's lr/<name>
        self._lr_names = group_log_names(model, self.optimizer.param_groups)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lr_factor(config.schedule, config.steps, config.warmup_steps, **config.schedule_kwargs),
        )
        self.autocast_dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[config.amp]
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=config.amp == "fp16")
        self.step = 0
        self.train_seconds = 0.0
        self.window = LogWindow(self.device)  # losses and method reports since the last log step
        self.logger = (
            MetricsLogger(self.run_dir / "metrics.jsonl", tensorboard_dir=self.run_dir / "tensorboard")
            if self.dist.is_main
            else None
        )
        self.last_train_losses: dict[str, float] = {}
        # training health (train/health.py): reads the flushed losses and the target predictions, never a label
        self.health: HealthMonitor | None = None
        self._checkpoint_step: int | None = None
        # label-free checkpoint selection (train/selection.py): the configured validators at every evaluation
        self.selector: CheckpointSelector | None = None
        if config.validators:
            if selection is None:
                selection = SelectionData(target=None if target_train is None else UnlabelledInputs(target_train))
            self.selector = CheckpointSelector(
                build_validators(config.validators), selection, run_dir=self.run_dir, device=self.device,
                batch_size=config.eval_batch_size, autocast_dtype=self.autocast_dtype)
        if config.on_unhealthy != "off":
            num_classes = getattr(getattr(method, "context", None), "num_classes", 0)  # 0: no chance-level checks
            self.health = HealthMonitor(num_classes, parse_health_options(config.health_kwargs),
                                        domain_weight=method_domain_weight(method))

    @property
    def health_codes(self) -> list[str] | None:
        """The health codes that fired in this run, in order of first firing (None: on_unhealthy="off")."""
        return None if self.health is None else list(self.health.codes)

    # ------------------------------------------------------------------ training
    def _next_batch(self) -> Batch:
        x_s = y_s = x_t = y_t = index_t = scored = None
        cl = self.config.channels_last
        if "source" in self.streams:
            x, y = next(self.streams["source"])
            x_s, y_s = to_device(x, self.device, cl), to_device(y, self.device)
        if "target" in self.streams:
            (x, y), index = self.streams["target"].next_with_index()
            x_t = to_device(x, self.device, cl)
            if self.method.uses_target_labels:
                y_t = to_device(y, self.device)
            if self.method.uses_target_index:
                index_t = to_device(index, self.device)
            if self.method.online_accuracy and isinstance(y, torch.Tensor):
                scored = to_device(y, self.device)  # for the trainer's online score only, never the method's
        return Batch(x_s, y_s, x_t, y_t, index_t, scored)

    def _score_online(self, labels: torch.Tensor | None) -> None:
        """Count the training forward's target predictions against the stream's labels (rows labelled < 0, as
        unlabelled own data is, are not scored)."""
        logits = getattr(self.method, "last_target_logits", None)
        if labels is None or logits is None or logits.shape[0] != labels.shape[0]:
            return
        known = labels >= 0
        correct = ((logits.argmax(1) == labels) & known).sum()
        self.online_counts += torch.stack([correct, known.sum()])

    def refresh(self) -> None:
        """The method's periodic work over the unlabelled target training set (Method.refresh), under no_grad;
        every module's train/eval flag is restored after (the method may switch modes for it)."""
        target = TargetPass(self._target_inputs, step=self.step, device=self.device,
                            batch_size=self.config.eval_batch_size, autocast_dtype=self.autocast_dtype)
        with torch.no_grad():
            self.method.refresh(self.model, target)
        set_train_mode(self.step_module)

    def _wrap_ddp(self) -> nn.Module:
        """DDP over the step module. DDP hooks only the parameters that require grad when it wraps, so a change of
        the trainable set (gradual unfreezing) wraps again, on every rank at the same step."""
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(self.step_module, device_ids=ids)

    def _apply_unfreeze_schedule(self) -> None:
        """Gradual unfreezing (config.unfreeze_every > 0; strategies.GradualUnfreezing): which blocks train is a
        pure function of the step, so a resumed run unfreezes where an uninterrupted one does."""
        if self.config.unfreeze_every <= 0:
            return
        schedule = getattr(self, "_unfreezing", None)
        if schedule is None:
            managed = [p for g in self.optimizer.param_groups for p in g["params"]]
            schedule = self._unfreezing = GradualUnfreezing(self.model, self.config.unfreeze_every, managed)
        if schedule.apply(self.step):
            set_train_mode(self.step_module)  # BatchNorm of the blocks still frozen stays in eval mode
            if self.dist.enabled:
                del self.engine  # its reducer's gradient hooks go with it
                self.engine = self._wrap_ddp()

    def learning_rates(self) -> dict[str, float]:
        """The learning rates now, as metrics.jsonl logs them (`param_groups.logged_learning_rates`)."""
        base_lr = self.config.lr * self.scheduler.lr_lambdas[0](self.scheduler.last_epoch)
        return logged_learning_rates(base_lr, self.optimizer.param_groups, self._lr_names)

    def train_step(self) -> None:
        self._apply_unfreeze_schedule()
        every = self.method.refresh_every
        if every > 0 and self.step % every == 0:
            self.refresh()
        config = self.config
        progress = self.step / config.steps
        accum = config.grad_accum
        # one update: each micro-batch is drawn as it is used; several phases reuse the step's micro-batches
        batches = [self._next_batch() for _ in range(accum)] if len(self.updates) > 1 else None
        for number, update in enumerate(self.updates):
            for micro in range(accum):
                batch = batches[micro] if batches is not None else self._next_batch()
                sync = contextlib.nullcontext()
                if self.dist.enabled and micro < accum - 1:
                    sync = self.engine.no_sync()  # type: ignore[operator]
                with sync:
                    with autocast(self.device, self.autocast_dtype):
                        total, losses = self.engine(batch.x_s, batch.y_s, batch.x_t, batch.y_t, progress, self.step,
                                                    update.phase, batch.index_t)
                    self.scaler.scale(total / accum).backward()
                if number == 0:  # predictions made before any update on this batch
                    if self.health is not None:  # the target batch's predicted classes, on the device (no sync)
                        self.health.observe_target_logits(getattr(self.method, "last_target_logits", None))
                    if self.method.online_accuracy:
                        self._score_online(batch.scored)
                if update.phase is not None:  # "<phase>/<loss>", each phase's repeats averaged
                    losses = {f"{update.phase}/{k}": v for k, v in losses.items()}
                self.window.add_forward(losses, total, accum * update.repeats, self.method.take_reports())
            update.drop_other_gradients()
            if config.grad_clip is not None:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.step_module.parameters(), config.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.window.end_step()
        self.step += 1

    def online_metrics(self) -> dict[str, float]:
        """`target_online/acc` of a method with `online_accuracy` (summed over ranks), else nothing."""
        if not self.method.online_accuracy:
            return {}
        counts = self.dist.all_reduce_sum(self.online_counts.clone())
        return {} if int(counts[1]) == 0 else {"target_online/acc": float(counts[0]) / float(counts[1]),
                                               "target_online/n": float(counts[1])}

    def _check_health(self, losses: dict[str, float]) -> list[HealthEvent]:
        """Run the health checks on a log step's flushed losses and the window's target predictions; log what
        fired or cleared (rank 0). Every rank gets the same answer: the inputs are averaged over ranks."""
        if self.health is None:
            return []
        counts = self.health.take_target_counts()
        if self.dist.enabled and self.method.uses_target:  # a class flag: every rank takes part, or none does
            if counts is None:  # this rank's window saw no target logits of the right shape
                counts = torch.zeros(self.health.num_classes, dtype=torch.long, device=self.device)
            counts = self.dist.all_reduce_sum(counts)
            counts = counts if int(counts.sum()) > 0 else None
        events = self.health.check(self.step, self.step / self.config.steps, losses,
                                   None if counts is None else counts.cpu())
        if self.logger is not None:
            for event in events:
                self.logger.log(event.record())
        return events

    def _stop_if_unhealthy(self) -> None:
        """on_unhealthy="stop": end the run while a check holds (its record is written; no checkpoint is)."""
        if self.config.on_unhealthy != "stop" or self.health is None or not self.health.active:
            return
        kept = (f"the last checkpoint {self.checkpoint_path} (step {self._checkpoint_step}) is kept"
                if self._checkpoint_step is not None else "no checkpoint was written")
        raise UnhealthyRunError(
            f"unhealthy run at step {self.step}: " + "; ".join(f"{c}: {m}" for c, m in self.health.active.items())
            + f" — {kept}; on_unhealthy=warn continues it")

    def evaluate_all(self) -> dict[str, float]:
        metrics: dict[str, float] = {}
        for name, dataset in self.eval_sets.items():
            result = run_loop(self.model, dataset, self.measure(), device=self.device,
                              batch_size=self.config.eval_batch_size, dist=self.dist,
                              autocast_dtype=self.autocast_dtype, channels_last=self.config.channels_last)
            metrics.update({f"{name}/{k}": v for k, v in result.items()})
        return metrics

    def validate(self) -> dict[str, float]:
        """The validators' scores now (validator/<name>); each new best writes checkpoints/best-<name>.pt."""
        if self.selector is None:
            return {}
        return self.selector.evaluate(self.model, self.step, self.dist.is_main, self.model_state)

    def _due(self, every: int) -> bool:
        return every > 0 and self.step % every == 0

    def fit(self) -> dict[str, Any]:
        """Train to `config.steps` (resuming if a checkpoint exists); return final metrics."""
        config = self.config
        resumed = self.resume_if_possible()
        self._checkpoint_step = self.step if resumed else None  # the step of the checkpoint on disk, for errors
        if self.logger is not None:
            self.logger.truncate_after(self.step)
            if resumed:
                self.logger.log({"step": self.step, "event": "resumed"})
        bar = None
        if config.progress and self.dist.is_main:
            from tqdm.auto import tqdm

            bar = tqdm(total=config.steps, initial=self.step, desc=f"{config.method} {config.source}→{config.target}")
        set_train_mode(self.step_module)
        if not self.method.trains:  # AdaBN: its work at step 0, no optimizer step (result.json "steps": 0)
            self.refresh()
        t0 = time.perf_counter()
        try:
            while self.method.trains and self.step < config.steps:
                self.train_step()
                record: dict[str, Any] = {}
                flushed = self._due(config.log_every) or self.step == config.steps
                if flushed:
                    record.update(self.window.flush(self.dist))
                    record.update(self.learning_rates())
                    self.last_train_losses = {k: v for k, v in record.items() if k.startswith("train/")}
                    if not all(math.isfinite(v) for v in self.last_train_losses.values()):
                        self._check_health(self.last_train_losses)  # loss_spike's record, then the error
                        raise FloatingPointError(f"non-finite training loss at step {self.step}: {self.last_train_losses}")
                if self._due(config.eval_every) and self.step < config.steps:
                    record.update(self.evaluate_all())
                    record.update(self.validate())
                if record and self.logger is not None:
                    self.logger.log({"step": self.step, **record})
                if flushed:
                    self._check_health(self.last_train_losses)
                if bar is not None:
                    bar.update(1)
                    if flushed:
                        active = {} if self.health is None or not self.health.active else {
                            "health": ",".join(self.health.active)}
                        bar.set_postfix(loss=f"{record.get('train/total', math.nan):.4f}", **active)
                self._stop_if_unhealthy()
                if self._due(config.checkpoint_every) and self.step < config.steps:
                    self.train_seconds += time.perf_counter() - t0
                    t0 = time.perf_counter()
                    self.save_checkpoint()
                    self._checkpoint_step = self.step
        finally:
            if bar is not None:
                bar.close()
        self.train_seconds += time.perf_counter() - t0
        final = {**self.evaluate_all(), **self.validate(), **self.online_metrics()}
        bad = sorted(k for k, v in final.items() if not math.isfinite(v))
        if bad:
            raise FloatingPointError(f"non-finite final metrics {bad} at step {self.step}; no result is written")
        if self.logger is not None:
            self.logger.log({"step": self.step, "event": "final", **final})
            self.logger.close()
        self.save_checkpoint()
        return {**final, **self.last_train_losses}
