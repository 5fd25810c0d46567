"""Elastic weight consolidation (Kirkpatrick et al. 2017, PNAS, eq. 3) and online EWC (Schwarz et al. 2018,
"Progress & Compress", sec. 3.1), with the exact diagonal Fisher from per-sample gradients.

Estimator and normalisation (λ does not carry across codebases; van de Ven & Tolias note it): F_i is the MEAN
over examples x of E_{y~p(y|x)}[(∂ log p(y|x)/∂θ_i)²], each gradient taken for ONE example (torch.func vmap over
the batch). It is not the square of a batch-mean gradient, which drops the per-sample variance and shrinks with
the batch size (the benchmark `benchmarks/fisher.py` measures how far off that shortcut is). The penalty is
(λ/2) Σ_tasks Σ_i F_i (θ_i − θ*_i)². Label options: "true" (y sampled from the model, the Fisher proper),
"empirical" (the data's labels), "exact" (all classes weighted by the predicted probabilities). The model is
put in eval mode while the Fisher is computed, so BatchNorm statistics do not move.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

FISHER_KINDS = ("true", "empirical", "exact")


class EWCError(ValueError):
    """Bad input to the Fisher or the EWC penalty; the message names the problem."""


def _gather(data: Any, n_samples: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        x, y = data
        n = len(x)
        index = torch.arange(n)
        fetch = lambda i: (x[i], y[i])  # noqa: E731
    else:
        n = len(data)
        get_batch = getattr(data, "get_batch", None)
        fetch = get_batch or (lambda i: (torch.stack([data[int(k)][0] for k in i]),
                                         torch.tensor([int(data[int(k)][1]) for k in i])))
        index = torch.arange(n)
    if n == 0:
        raise EWCError("the Fisher needs data, got an empty dataset")
    if n_samples is not None and n_samples < n:
        index = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:n_samples].sort().values
    return fetch(index)


@torch.no_grad()
def sample_fisher_labels(model: nn.Module, x: torch.Tensor, y: torch.Tensor, kind: str,
                         generator: torch.Generator, chunk_size: int = 256) -> torch.Tensor:
    """The labels the Fisher differentiates: sampled from the model ("true") or the data's ("empirical")."""
    if kind == "empirical":
        return y
    out = []
    for start in range(0, len(x), chunk_size):
        probs = model(x[start : start + chunk_size]).float().softmax(1).cpu()
        out.append(torch.multinomial(probs, 1, generator=generator).squeeze(1))
    return torch.cat(out).to(x.device)


def diagonal_fisher(
    model: nn.Module,
    data: Any,
    *,
    kind: str = "true",
    n_samples: int | None = None,
    chunk_size: int = 64,
    device: torch.device | str | None = None,
    seed: int = 0,
    params: list[str] | None = None,
) -> dict[str, torch.Tensor]:
    """Exact diagonal Fisher {parameter name: tensor}, mean over examples of squared per-example gradients.

    `data`: a dataset with `get_batch` (digit domains), any map-style dataset of (x, y), or a tensor pair (x, y);
    at most `n_samples` examples (a seeded choice). Memory is bounded by `chunk_size` per-example gradients."""
    if kind not in FISHER_KINDS:
        raise EWCError(f"unknown Fisher kind '{kind}'; choose one of {list(FISHER_KINDS)}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    names = params if params is not None else [n for n, p in model.named_parameters() if p.requires_grad]
    all_params = dict(model.named_parameters())
    missing = [n for n in names if n not in all_params]
    if missing:
        raise EWCError(f"the model has no parameter(s) {missing}")
    x_all, y_all = _gather(data, n_samples, seed)
    was_training = model.training
    model.eval()
    try:
        fixed = {n: p.detach() for n, p in all_params.items() if n not in names}
        buffers = dict(model.named_buffers())
        theta = {n: all_params[n].detach() for n in names}

        def nll(theta: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            logits = functional_call(model, ({**theta, **fixed}, buffers), (x.unsqueeze(0),))
            return F.cross_entropy(logits.float(), y.unsqueeze(0))  # = −log p(y|x)

        per_example = vmap(grad(nll), in_dims=(None, 0, 0))
        generator = torch.Generator().manual_seed(seed)
        total = {n: torch.zeros_like(t, dtype=torch.float32) for n, t in theta.items()}
        for start in range(0, len(x_all), chunk_size):
            x = x_all[start : start + chunk_size].to(device)
            y = y_all[start : start + chunk_size].to(device)
            if kind == "exact":
                with torch.no_grad():
                    probs = model(x).float().softmax(1)
                for c in range(probs.shape[1]):
                    g = per_example(theta, x, torch.full_like(y, c))
                    w = probs[:, c]
                    for n in total:
                        total[n] += (w.view(-1, *[1] * (g[n].dim() - 1)) * g[n].float() ** 2).sum(0)
            else:
                labels = sample_fisher_labels(model, x, y, kind, generator)
                g = per_example(theta, x, labels)
                for n in total:
                    total[n] += (g[n].float() ** 2).sum(0)
        return {n: t / len(x_all) for n, t in total.items()}
    finally:
        model.train(was_training)


def _buffer_name(kind: str, task: int, param: str) -> str:
    return f"{kind}{task}__{param.replace('.', '__')}"


def _check_against(params: dict[str, torch.Tensor], fisher: dict[str, torch.Tensor], what: str) -> None:
    for name, f in fisher.items():
        if name not in params:
            raise EWCError(f"{what}: the Fisher has parameter '{name}', which the model does not have")
        if params[name].shape != f.shape:
            raise EWCError(f"{what}: parameter '{name}' has shape {tuple(params[name].shape)} in the model, "
                           f"{tuple(f.shape)} in the Fisher")


class EWCPenalty(nn.Module):
    """(λ/2) Σ_tasks Σ_i F_i (θ_i − θ*_i)²; one anchor per `add_task`, or with `online=True` a single anchor
    (the latest θ*) and F ← γ F + F_new. Anchors and Fishers are buffers: checkpointed and moved with the module."""

    def __init__(self, lam: float, *, online: bool = False, gamma: float = 1.0) -> None:
        super().__init__()
        if lam < 0:
            raise EWCError(f"EWC λ must be >= 0, got {lam}")
        if online and not 0.0 < gamma <= 1.0:
            raise EWCError(f"online EWC γ must be in (0, 1], got {gamma}")
        self.lam, self.online, self.gamma = float(lam), online, float(gamma)
        self.register_buffer("num_tasks", torch.zeros((), dtype=torch.int64))
        self.param_names: list[str] = []

    def add_task(self, model_or_params: nn.Module | dict[str, torch.Tensor], fisher: dict[str, torch.Tensor]) -> None:
        params = dict(model_or_params.named_parameters()) if isinstance(model_or_params, nn.Module) else model_or_params
        _check_against(params, fisher, "EWC add_task")
        if self.param_names and sorted(fisher) != sorted(self.param_names):
            raise EWCError("EWC add_task: this Fisher covers other parameters than the earlier tasks' Fishers")
        self.param_names = sorted(fisher)
        task = 0 if self.online else int(self.num_tasks)
        for name in self.param_names:
            anchor = params[name].detach().clone().float()
            new_f = fisher[name].detach().clone().float().to(anchor.device)
            f_key, a_key = _buffer_name("fisher", task, name), _buffer_name("anchor", task, name)
            if self.online and int(self.num_tasks) > 0:
                new_f = self.gamma * getattr(self, f_key) + new_f
            self.register_buffer(f_key, new_f)
            self.register_buffer(a_key, anchor)
        self.num_tasks += 1

    def fisher(self, task: int = 0) -> dict[str, torch.Tensor]:
        return {n: getattr(self, _buffer_name("fisher", task, n)) for n in self.param_names}

    def anchor(self, task: int = 0) -> dict[str, torch.Tensor]:
        return {n: getattr(self, _buffer_name("anchor", task, n)) for n in self.param_names}

    @property
    def num_anchors(self) -> int:
        return min(int(self.num_tasks), 1) if self.online else int(self.num_tasks)

    def forward(self, model: nn.Module) -> torch.Tensor:
        params = dict(model.named_parameters())
        total = torch.zeros((), device=next(model.parameters()).device)
        for task in range(self.num_anchors):
            for name in self.param_names:
                f = getattr(self, _buffer_name("fisher", task, name))
                a = getattr(self, _buffer_name("anchor", task, name))
                total = total + (f * (params[name].float() - a) ** 2).sum()
        return 0.5 * self.lam * total

    def load_state_dict(self, state_dict: dict[str, Any], strict: bool = True, assign: bool = False):  # type: ignore[override]
        """Also into a fresh penalty: buffers named in `state_dict` are created first."""
        for key, value in state_dict.items():
            if key != "num_tasks" and not hasattr(self, key):
                self.register_buffer(key, torch.empty_like(value))
        names = {k.split("__", 1)[1].replace("__", ".") for k in state_dict if k.startswith("fisher0__")}
        if names:
            self.param_names = sorted(names)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


def save_fisher(path: str | Path, fisher: dict[str, torch.Tensor]) -> None:
    from ..io import atomic_write

    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in fisher.items()}, buffer)
    atomic_write(path, lambda f: f.write(buffer.getvalue()))


def load_fisher(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise EWCError(f"no Fisher file at {path}") from None
    except Exception as err:  # pickle, zip and torch errors all mean a damaged file here
        raise EWCError(f"damaged Fisher file {path}: {type(err).__name__}: {err}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EWCError(f"{path} is not a Fisher file (a dict of tensors)")
    return state
