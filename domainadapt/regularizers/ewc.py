"""Elastic weight consolidation (Kirkpatrick et al. 2017, PNAS, eq. 3) and online EWC (Schwarz et al. 2018,
"Progress & Compress", sec. 3.1), anchored with the exact diagonal Fisher of `fisher.diagonal_fisher`.

Penalty: (λ/2) Σ_tasks Σ_i F_i (θ_i − θ*_i)², with the ½ of Kirkpatrick et al. (λ does not carry across
codebases that drop the ½ or square a batch-mean gradient: see `fisher`).

As a regularizer of a fine-tuning run: {"ewc": {"lam": 100, "kind": "true", "samples": 1000}} anchors the
starting weights with the Fisher on the previous task's data, which the task supplies (for image tasks the run's
*source* training split; for DAPT, general text). Anchors of an EWC run we start from are kept (one per task),
or, with online=True, merged as F ← γF + F_new.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..io import atomic_write
from .base import Regularizer, RegularizerContext, RegularizerError, register_regularizer
from .fisher import EWCError, ParameterMismatchError, diagonal_fisher


# ----------------------------------------------------------------------------------------------- the penalty

_TASK_KEY = re.compile(r"^(fisher|anchor)(\d+)__(.+)$")


def _key(name: str) -> str:
    """Buffer-safe form of a parameter name ('backbone.conv1.weight' → 'backbone__conv1__weight')."""
    return name.replace(".", "__")


def _check_against(params: dict[str, torch.Tensor], tensors: dict[str, torch.Tensor], what: str) -> None:
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise EWCError(f"{what}: entry '{name}' is a {type(t).__name__}, not a tensor")
        if name not in params:
            raise ParameterMismatchError(f"{what}: parameter '{name}' is not in the model (another model's?)")
        if tuple(params[name].shape) != tuple(t.shape):
            raise ParameterMismatchError(f"{what}: parameter '{name}' has shape {tuple(params[name].shape)} in the "
                                         f"model but {tuple(t.shape)} in the Fisher/anchor")


class EWCPenalty(nn.Module):
    """(λ/2) Σ_tasks Σ_i F_i (θ_i − θ*_i)² (Kirkpatrick et al. 2017): one anchor θ* per `add_task`; with
    `online=True` one anchor (the latest θ*) and F ← γ F + F_new (Schwarz et al. 2018).

    Anchors and Fishers are float32 buffers named `fisher{t}__{param}` / `anchor{t}__{param}` (dots → '__'), so
    they go into `state_dict()`, move with `.to()`, and a fresh penalty can load a saved state with any number
    of tasks (also through a parent module's load_state_dict)."""

    def __init__(self, lam: float, *, online: bool = False, gamma: float = 1.0) -> None:
        super().__init__()
        if not (math.isfinite(lam) and lam >= 0):
            raise EWCError(f"EWC λ must be >= 0, got {lam}")
        if online and not 0.0 < gamma <= 1.0:
            raise EWCError(f"online EWC γ must be in (0, 1], got {gamma}")
        self.lam, self.online, self.gamma = float(lam), bool(online), float(gamma)
        self.register_buffer("num_tasks", torch.zeros((), dtype=torch.int64))
        self._names: dict[str, str] = {}  # buffer key → parameter name

    # -- tasks
    @property
    def num_anchors(self) -> int:
        return min(int(self.num_tasks), 1) if self.online else int(self.num_tasks)

    @property
    def param_names(self) -> list[str]:
        return list(self._names.values())

    def add_task(self, model_or_params: nn.Module | dict[str, torch.Tensor], fisher: dict[str, torch.Tensor]) -> None:
        """Anchor the current weights θ* (detached copy) with their Fisher (from `diagonal_fisher`)."""
        if isinstance(model_or_params, nn.Module):
            params = dict(model_or_params.named_parameters())
        elif isinstance(model_or_params, dict):
            params = model_or_params
        else:
            raise EWCError(f"add_task takes a model or a dict of parameters, got {type(model_or_params).__name__}")
        if not fisher:
            raise EWCError("add_task: the Fisher is empty")
        _check_against(params, fisher, "EWC add_task")
        for name, f in fisher.items():
            if not bool(torch.isfinite(f).all()) or bool((f < 0).any()):
                raise EWCError(f"add_task: the Fisher of '{name}' has negative or non-finite entries")
        names = {_key(n): n for n in fisher}
        if len(names) != len(fisher):
            raise EWCError("add_task: two parameter names map to the same buffer name (one with '__')")
        if self._names and sorted(names) != sorted(self._names):
            other = min(set(names) ^ set(self._names))
            raise ParameterMismatchError(f"add_task: parameter '{names.get(other, self._names.get(other))}' is "
                                         "covered by this Fisher or by the earlier tasks' Fishers, not both")
        task = 0 if self.online else int(self.num_tasks)
        for key, name in names.items():
            anchor = params[name].detach().clone().float()
            new_f = fisher[name].detach().clone().float().to(anchor.device)
            f_key = f"fisher{task}__{key}"
            if self.online and int(self.num_tasks) > 0:
                new_f = self.gamma * getattr(self, f_key).to(anchor.device) + new_f
            self.register_buffer(f_key, new_f)
            self.register_buffer(f"anchor{task}__{key}", anchor)
        self._names = dict(sorted(names.items()))
        self.num_tasks += 1

    def fisher(self, task: int = 0) -> dict[str, torch.Tensor]:
        """The stored Fisher of `task` (online: the decayed sum, task 0) by parameter name."""
        self._check_task(task)
        return {n: getattr(self, f"fisher{task}__{k}") for k, n in self._names.items()}

    def anchor(self, task: int = 0) -> dict[str, torch.Tensor]:
        self._check_task(task)
        return {n: getattr(self, f"anchor{task}__{k}") for k, n in self._names.items()}

    def _check_task(self, task: int) -> None:
        if not 0 <= task < self.num_anchors:
            raise EWCError(f"no anchor {task}: this penalty holds {self.num_anchors}")

    # -- the penalty
    def forward(self, model: nn.Module) -> torch.Tensor:
        params = {_key(n): p for n, p in model.named_parameters()}
        if self.num_anchors == 0:
            return torch.zeros((), device=next(iter(params.values())).device if params else None)
        for key, name in self._names.items():
            p, a = params.get(key), getattr(self, f"anchor0__{key}")
            if p is None or p.shape != a.shape:
                raise ParameterMismatchError(
                    f"EWC penalty: parameter '{name}' " + ("is not in the model" if p is None else
                    f"has shape {tuple(p.shape)} in the model but {tuple(a.shape)} in the anchor"))
        total = None
        for task in range(self.num_anchors):
            for key in self._names:
                f, a = getattr(self, f"fisher{task}__{key}"), getattr(self, f"anchor{task}__{key}")
                term = (f * (params[key].float() - a) ** 2).sum()
                total = term if total is None else total + term
        return 0.5 * self.lam * total

    # -- checkpoints
    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        """Rebuild the task buffers from the incoming state, so a fresh penalty can take k saved tasks."""
        incoming: dict[str, torch.Tensor] = {}
        for full, value in state_dict.items():
            if full.startswith(prefix) and _TASK_KEY.match(full[len(prefix) :]):
                incoming[full[len(prefix) :]] = value
        if incoming:
            tasks = {int(_TASK_KEY.match(k).group(2)) for k in incoming}
            keys = {_TASK_KEY.match(k).group(3) for k in incoming}
            expected = {f"{kind}{t}__{k}" for kind in ("fisher", "anchor") for t in range(len(tasks)) for k in keys}
            if set(incoming) != expected:
                raise EWCError(f"EWC state: incomplete task buffers, missing {sorted(expected - set(incoming))[:3]}")
            saved_tasks = state_dict.get(prefix + "num_tasks")
            n_saved = int(saved_tasks) if saved_tasks is not None else len(tasks)
            if self.online and len(tasks) > 1:
                raise EWCError(f"EWC state: {len(tasks)} anchors cannot load into an online penalty (one anchor)")
            if not self.online and n_saved != len(tasks):
                raise EWCError(f"EWC state: {n_saved} tasks in one anchor (an online penalty's) cannot load into a "
                               "multi-anchor penalty; build it with online=True")
            for name in [b for b in self._buffers if _TASK_KEY.match(b) and b not in incoming]:
                del self._buffers[name]
            device = self.num_tasks.device
            for k, v in incoming.items():
                if k not in self._buffers:
                    self.register_buffer(k, torch.empty(v.shape, dtype=torch.float32, device=device))
            self._names = {k: k.replace("__", ".") for k in sorted(keys)}
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def extra_repr(self) -> str:
        return f"lam={self.lam}, online={self.online}, gamma={self.gamma}, tasks={int(self.num_tasks)}"


# ----------------------------------------------------------------------------------------------- files


def save_fisher(path: str | Path, fisher: dict[str, torch.Tensor]) -> None:
    """Write {name: tensor} atomically (a crash leaves the old file or the new one)."""
    if not isinstance(fisher, dict) or not all(isinstance(v, torch.Tensor) for v in fisher.values()):
        raise EWCError("save_fisher takes a dict {parameter name: tensor}")
    state = {str(k): v.detach().cpu().contiguous() for k, v in fisher.items()}
    atomic_write(path, lambda f: torch.save(state, f))


def load_fisher(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a file written by `save_fisher` (weights only: no pickled code runs)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no Fisher file at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - zip, pickle and torch errors all mean a damaged file here
        raise EWCError(f"damaged Fisher file {path}: {type(err).__name__}: {err}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EWCError(f"{path} is not a Fisher file (a dict of tensors)")
    return state


# ----------------------------------------------------------------------------------------------- the regularizer


@dataclass(frozen=True)
class EWCOptions:
    lam: float = 1.0  # λ of (λ/2) Σ F (θ − θ*)²
    kind: str | None = None  # Fisher kind: "true", "empirical", "exact"; None: the task's ("true" for classifiers)
    samples: int = 1000  # examples of the previous task's data the Fisher averages over (a seeded choice)
    online: bool = False  # online EWC: one anchor, F ← γF + F_new
    gamma: float = 1.0  # online EWC's decay γ
    chunk_size: int = 64  # per-example gradients held at once (vectorised Fisher)


@register_regularizer
class EWC(Regularizer):
    """EWC / online EWC around the starting weights, the Fisher from the task's data and likelihood."""

    name = "ewc"
    Options = EWCOptions

    def check(self, options: EWCOptions) -> None:
        if options.lam < 0:
            raise RegularizerError(f"regularizer 'ewc': lam must be >= 0, got {options.lam}")
        if options.samples < 1 or options.chunk_size < 1:
            raise RegularizerError("regularizer 'ewc': samples and chunk_size must be >= 1")

    def build(self, options: EWCOptions, model: nn.Module, context: RegularizerContext) -> nn.Module:
        data = context.fisher
        if data is None:
            raise RegularizerError(f"regularizer 'ewc': {context.no_fisher_reason}")
        kind = options.kind or data.default_kind
        if kind not in data.kinds:
            raise RegularizerError(f"regularizer 'ewc': this task's Fisher supports kind {list(data.kinds)}, not '{kind}'")
        penalty = EWCPenalty(options.lam, online=options.online, gamma=options.gamma)
        if context.previous is not None:
            prefix = "regularizers.ewc."
            carried = {k[len(prefix):]: v for k, v in context.previous["modules"].items() if k.startswith(prefix)}
            if carried:  # the run we start from was itself EWC-regularised: keep its anchors
                penalty.load_state_dict(carried)
        fisher = diagonal_fisher(model, data.data, kind=kind, n_samples=options.samples, chunk_size=options.chunk_size,
                                 nll=data.nll, logits=data.logits, vectorize=data.vectorize)
        penalty.add_task(model, fisher)
        return penalty
