"""Elastic weight consolidation (Kirkpatrick et al. 2017, PNAS, eq. 3) and online EWC (Schwarz et al. 2018,
"Progress & Compress", sec. 3.1), with the exact diagonal Fisher from per-sample gradients.

Penalty: (λ/2) Σ_tasks Σ_i F_i (θ_i − θ*_i)², with the ½ of Kirkpatrick et al.

Estimator and normalisation. λ does not carry across codebases (van de Ven & Tolias, "Three scenarios for
continual learning"): some libraries drop the ½, and some square the gradient of a batch *mean*, which drops the
per-sample variance and shrinks with the batch size. Here F_i is the MEAN over examples x of
E_y[(∂ log p(y|x)/∂θ_i)²], each gradient taken for ONE example (torch.func vmap of grad): not a sum over examples,
not a batch-averaged gradient squared (`benchmarks/fisher.py` measures how far off that shortcut is).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

FISHER_KINDS = ("true", "empirical", "exact")


class EWCError(ValueError):
    """Bad input to the Fisher or the EWC penalty; the message names the problem."""


class EmptyDataError(EWCError):
    """The Fisher was asked for over no examples."""


class ParameterMismatchError(EWCError):
    """A Fisher or an anchor that belongs to another model (parameter names or shapes differ)."""


# ----------------------------------------------------------------------------------------------- data access


def _data_access(data: Any) -> tuple[int, Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]]:
    """(number of examples, fetch(index tensor) -> (x, y)) for a tensor pair, `get_batch` or map-style data."""
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        x, y = data
        if len(x) != len(y):
            raise EWCError(f"the Fisher data pair has {len(x)} inputs but {len(y)} labels")
        return len(x), lambda i: (x[i], y[i])
    if not hasattr(data, "__len__"):
        raise EWCError(f"the Fisher needs a dataset with __len__ or a tensor pair (x, y), got {type(data).__name__}")
    from ..data.streams import fetch_batch

    return len(data), lambda index: fetch_batch(data, index)


def sample_indices(n: int, n_samples: int | None, generator: torch.Generator) -> torch.Tensor:
    """The examples the Fisher uses: all `n`, or `n_samples` of them drawn without replacement (sorted)."""
    if n == 0:
        raise EmptyDataError("the Fisher needs data, got an empty dataset")
    if n_samples is not None and n_samples < 1:
        raise EmptyDataError(f"the Fisher needs n_samples >= 1, got {n_samples}")
    if n_samples is None or n_samples >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=generator)[:n_samples].sort().values


@torch.no_grad()
def sample_fisher_labels(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor, kind: str,
                         generator: torch.Generator, chunk_size: int = 256) -> torch.Tensor:
    """The labels the Fisher differentiates: "empirical" → the data's `y`; "true" → y ~ p(y|x) of the model.

    Example k takes the k-th uniform draw of `generator` (inverse CDF), so labels do not depend on how the data
    is split into batches: one call over all x equals successive calls over its pieces with the same generator."""
    if kind == "empirical":
        return y
    if kind != "true":
        raise EWCError(f"labels are sampled for kind 'true' or 'empirical', not '{kind}'")
    u = torch.rand(len(x), generator=generator, dtype=torch.float64)
    out = []
    for start in range(0, len(x), chunk_size):
        probs = model(x[start : start + chunk_size]).detach().double().softmax(1).cpu()
        cdf = probs.cumsum(1)
        out.append((cdf <= u[start : start + chunk_size, None]).sum(1).clamp_(max=probs.shape[1] - 1))
    return torch.cat(out).to(y.device if isinstance(y, torch.Tensor) else x.device)


# ----------------------------------------------------------------------------------------------- the Fisher


def diagonal_fisher(
    model: nn.Module,
    data: Any,
    *,
    kind: str = "true",
    n_samples: int | None = None,
    chunk_size: int = 64,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    seed: int = 0,
    params: list[str] | None = None,
) -> dict[str, torch.Tensor]:
    """Exact diagonal Fisher {parameter name: float32 tensor} at the model's current weights.

    F_i = mean over examples of E_y[(∂ log p(y|x)/∂θ_i)²] (Kirkpatrick et al. 2017), per-example gradients by
    `vmap(grad(...))` over `functional_call`; the MEAN over examples, never a squared batch-mean gradient (see
    the module docstring: λ values from codebases that use that shortcut or drop the ½ do not carry over).

    kind: "true" (y sampled from the model's predictive distribution, the Fisher proper), "empirical" (the
    data's labels), "exact" (Σ_c p(c|x) (∂ log p(c|x))², one gradient pass per class: C times the cost).
    data: a tensor pair (x, y), a dataset with `get_batch(index)`, or a map-style dataset of (x, y).
    n_samples: at most this many examples, a seeded choice; `seed` also seeds the sampled labels
    (`sample_indices` then `sample_fisher_labels` on one generator, so a loop can reproduce them).
    Memory: `batch_size` examples are fetched at a time and `chunk_size` per-example gradients held at once.
    The model runs in eval mode (BatchNorm uses and keeps its running statistics; every submodule's mode is
    restored after). params: parameter names to cover (default: those with requires_grad).
    """
    from torch.func import functional_call, grad, vmap

    if kind not in FISHER_KINDS:
        raise EWCError(f"unknown Fisher kind '{kind}'; choose one of {list(FISHER_KINDS)}")
    if chunk_size < 1 or batch_size < 1:
        raise EWCError(f"chunk_size and batch_size must be >= 1, got {chunk_size} and {batch_size}")
    all_params = dict(model.named_parameters())
    names = list(params) if params is not None else [n for n, p in all_params.items() if p.requires_grad]
    unknown = [n for n in names if n not in all_params]
    if unknown:
        raise ParameterMismatchError(f"the model has no parameter '{unknown[0]}' (asked for in params)")
    if not names:
        raise EWCError("the Fisher needs at least one parameter (none requires grad, or params is empty)")
    n, fetch = _data_access(data)
    generator = torch.Generator().manual_seed(seed)
    index = sample_indices(n, n_samples, generator)
    if device is None:
        device = next(iter(all_params.values())).device
    device = torch.device(device)

    theta = {k: all_params[k].detach().to(device) for k in names}
    fixed = {k: p.detach().to(device) for k, p in all_params.items() if k not in theta}
    buffers = {k: b.to(device) for k, b in model.named_buffers()}
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        def logits_of(th: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
            return functional_call(model, ({**th, **fixed}, buffers), (x,)).float()

        def nll(th: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return nn.functional.cross_entropy(logits_of(th, x.unsqueeze(0)), y.unsqueeze(0))  # −log p(y|x)

        per_example = vmap(grad(nll), in_dims=(None, 0, 0))
        total = {k: torch.zeros(t.shape, dtype=torch.float64, device=device) for k, t in theta.items()}

        def accumulate(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None = None) -> None:
            g = per_example(theta, x, y)
            for k in total:
                sq = g[k].float().square_()  # float32 within a chunk, float64 across chunks
                if weight is not None:
                    sq = sq.mul_(weight.float().view(-1, *[1] * (sq.dim() - 1)))
                total[k] += sq.sum(0)

        for start in range(0, len(index), batch_size):
            x_b, y_b = fetch(index[start : start + batch_size])
            x_b, y_b = x_b.to(device), torch.as_tensor(y_b).long().to(device)
            if kind != "exact":
                y_b = sample_fisher_labels(lambda x: logits_of(theta, x), x_b, y_b, kind, generator,
                                           chunk_size=max(chunk_size, 256))
            for s in range(0, len(x_b), chunk_size):
                x, y = x_b[s : s + chunk_size], y_b[s : s + chunk_size]
                if kind == "exact":
                    with torch.no_grad():
                        probs = logits_of(theta, x).double().softmax(1)
                    for c in range(probs.shape[1]):
                        accumulate(x, torch.full_like(y, c), probs[:, c])
                else:
                    accumulate(x, y)
        return {k: (t / len(index)).float().to(all_params[k].device) for k, t in total.items()}
    finally:
        for m, training in modes:
            m.training = training


def fisher_coverage(fisher: dict[str, torch.Tensor], tol: float = 0.0) -> dict[str, float]:
    """Fraction of each parameter's entries (and of all, key "all") whose Fisher is <= `tol`.

    Why it matters: EWC leaves an entry with F_i = 0 entirely free. In a ReLU network those are the weights into
    and out of units that never fire on the old task's data; a new domain can revive such units, and once they
    fire on old inputs too, the old task is forgotten although every constrained weight stayed put (Kirkpatrick
    et al. 2017's quadratic approximation only holds near θ*). A large zero fraction warns that EWC alone will not
    hold the old task; an isotropic term (L2-SP, Li et al. 2018) covers those directions."""
    if not fisher:
        raise EWCError("fisher_coverage: the Fisher is empty")
    out, zero, total = {}, 0, 0
    for name, f in fisher.items():
        small = int((f <= tol).sum())
        out[name] = small / max(f.numel(), 1)
        zero, total = zero + small, total + f.numel()
    out["all"] = zero / max(total, 1)
    return out


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
    from ..io import atomic_write

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
