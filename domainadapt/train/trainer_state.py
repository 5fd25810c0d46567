"""The trainer's checkpoint side: what a checkpoint holds, the finiteness check before each one is written, and
restoring all of it (model + method modules, optimizer, scheduler, scaler, streams, every rank's RNG, the step,
the log window, health and online-score state), so a resumed run ends bitwise equal to one never stopped.
A mixin of `Trainer` (train/trainer.py), which owns the attributes it reads."""

from __future__ import annotations

from typing import Any

import torch

from ..seeding import get_rng_state, set_rng_state
from .checkpoint import CheckpointError, load_latest, save_checkpoint


class TrainerCheckpoints:
    """Checkpoint methods of `Trainer`; see its __init__ for the attributes."""

    def state_dict(self) -> dict[str, Any]:
        return {
            "config_hash": self.config_hash,
            "config": self.config.to_dict(),
            "step": self.step,
            "train_seconds": self.train_seconds,
            "world_size": self.dist.world_size,
            "modules": self.step_module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "streams": {k: s.state_dict() for k, s in self.streams.items()},
            "rng": self.dist.all_gather_object(get_rng_state()),
            **self.window.state_dict(),  # loss_sums, loss_count, report_sums
            "last_train_losses": dict(self.last_train_losses),
            "model_info": self.model_info,
            "health": None if self.health is None else self.health.state_dict(),
            "online_counts": self.online_counts.cpu(),
            "selection": None if self.selector is None else self.selector.state_dict(),
        }

    def model_state(self) -> dict[str, Any]:
        """A checkpoint of the model alone (what `init_from`, predict and export read), at this step."""
        return {
            "config_hash": self.config_hash,
            "config": self.config.to_dict(),
            "step": self.step,
            "world_size": self.dist.world_size,
            "modules": {k: v for k, v in self.step_module.state_dict().items() if k.startswith("model.")},
            "model_info": self.model_info,
        }

    def check_finite(self) -> None:
        """Every floating-point weight, buffer and running loss sum is finite; a checkpoint is written only then, so
        a run that diverges keeps its last finite checkpoint (the same on every rank: weights are synchronised)."""
        for name, t in self.step_module.state_dict().items():
            if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise FloatingPointError(f"non-finite weights at step {self.step} ('{name}'); the last finite "
                                         f"checkpoint {self.checkpoint_path} is kept (lower lr, or clip gradients)")
        name = self.window.non_finite_loss()
        if name is not None:
            raise FloatingPointError(f"non-finite training loss '{name}' by step {self.step}; the last finite "
                                     f"checkpoint {self.checkpoint_path} is kept")

    def save_checkpoint(self) -> None:
        self.check_finite()
        state = self.state_dict()  # every rank takes part (RNG gather)
        if self.dist.is_main:
            save_checkpoint(self.checkpoint_path, state, keep_previous=True)
        self.dist.barrier()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        try:
            self._load_state_dict(state)
        except KeyError as err:
            raise CheckpointError(f"checkpoint of {self.run_dir} is malformed: it lacks {err}") from None
        except RuntimeError as err:  # tensors of another shape: another model
            raise CheckpointError(f"checkpoint of {self.run_dir} does not fit this run: {err}") from None

    def _load_state_dict(self, state: dict[str, Any]) -> None:
        if state["world_size"] != self.dist.world_size:
            raise ValueError(
                f"checkpoint was written by {state['world_size']} processes, this run has {self.dist.world_size}"
            )
        self.step_module.load_state_dict(state["modules"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        for k, s in self.streams.items():
            s.load_state_dict(state["streams"][k])
        set_rng_state(state["rng"][self.dist.rank])
        self.step = int(state["step"])
        self.train_seconds = float(state["train_seconds"])
        self.window.load_state_dict(state)
        self.last_train_losses = dict(state.get("last_train_losses", {}))
        if self.health is not None and state.get("health") is not None:  # older checkpoints (or "off"): fresh
            self.health.load_state_dict(state["health"], self.device)
        if "online_counts" in state:
            self.online_counts = state["online_counts"].to(self.device)
        if self.selector is not None and state.get("selection") is not None:
            self.selector.load_state_dict(state["selection"])

    def resume_if_possible(self) -> bool:
        """Resume from checkpoints/last.pt, or from prev.pt when last.pt is missing or damaged (with a warning)."""
        state = load_latest(self.checkpoint_path, expected_hash=self.config_hash)
        if state is None:
            return False
        self.load_state_dict(state)
        return True
