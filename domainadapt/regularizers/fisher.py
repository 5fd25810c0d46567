"""The diagonal Fisher, for every task: the task supplies its data and a per-example negative log-likelihood.

F_i = mean over examples x of E_y[(∂ log p(y|x)/∂θ_i)²] (Kirkpatrick et al. 2017, PNAS; the Fisher of EWC),
each gradient taken for ONE example: not a sum over examples, not a batch-averaged gradient squared (which
drops the per-sample variance and shrinks with the batch size; `benchmarks/fisher.py` measures how far off that
shortcut is). λ values from codebases that use that shortcut or drop EWC's ½ do not carry over (van de Ven &
Tolias, "Three scenarios for continual learning").

A task hands the regularizers a `FisherData`: the previous task's data, `nll(model, x, y)` (the loss of a batch
holding one example) and, for a classifier, `logits(model, x)` (to sample y from the model: the "true" Fisher).
Per-example gradients come from `torch.func.vmap(grad(...))` over `functional_call` when the model vectorises
(image classifiers), or from a per-example autograd loop (Hugging Face attention does not vectorise under
torch.func for every model); both give the same numbers (tests).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from ..data.streams import fetch_batch
from ..inference import batch_length, eval_mode, to_device

FISHER_KINDS = ("true", "empirical", "exact")

NLL = Callable[[Any, Any, torch.Tensor], torch.Tensor]  # (model, x of ONE example, y) -> scalar −log p(y|x)


class EWCError(ValueError):
    """Bad input to the Fisher or the EWC penalty; the message names the problem."""


class EmptyDataError(EWCError):
    """The Fisher was asked for over no examples."""


class ParameterMismatchError(EWCError):
    """A Fisher or an anchor that belongs to another model (parameter names or shapes differ)."""


def classifier_nll(model: Any, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """−log p(y|x) of a classifier (`model(x)` → logits)."""
    return nn.functional.cross_entropy(model(x).float(), y)


def classifier_logits(model: Any, x: Any) -> torch.Tensor:
    return model(x)


@dataclass
class FisherData:
    """What a task gives the Fisher: the data of the task the weights were trained on, and its likelihood.

    data      a tensor pair (x, y), a dataset with `get_batch(index)`, or a map-style dataset of (x, y)
    nll       −log p(y|x) of a batch holding one example; with `vectorize` it may only call `model(x)`
    logits    the model's logits of a batch (kinds "true" and "exact" sample or enumerate y from them); None:
              only "empirical" (y from the data: e.g. a masked LM, whose labels are the text itself)
    vectorize per-example gradients by vmap (True) or by a per-example autograd loop (False)
    """

    data: Any
    nll: NLL = classifier_nll
    logits: Callable[[Any, Any], torch.Tensor] | None = classifier_logits
    vectorize: bool = True

    @property
    def kinds(self) -> tuple[str, ...]:
        return FISHER_KINDS if self.logits is not None else ("empirical",)

    @property
    def default_kind(self) -> str:
        return "true" if self.logits is not None else "empirical"


# ----------------------------------------------------------------------------------------------- data access


def _data_access(data: Any) -> tuple[int, Callable[[torch.Tensor], tuple[Any, torch.Tensor]]]:
    """(number of examples, fetch(index tensor) -> (x, y)) for a tensor pair, `get_batch` or map-style data."""
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        x, y = data
        if len(x) != len(y):
            raise EWCError(f"the Fisher data pair has {len(x)} inputs but {len(y)} labels")
        return len(x), lambda i: (x[i], y[i])
    if not hasattr(data, "__len__"):
        raise EWCError(f"the Fisher needs a dataset with __len__ or a tensor pair (x, y), got {type(data).__name__}")
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


def _rows(x: Any, start: int, stop: int) -> Any:
    """Rows [start, stop) of a batch: a tensor or a dict of tensors (tokenised text)."""
    if isinstance(x, dict):
        return {k: v[start:stop] for k, v in x.items()}
    return x[start:stop]


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
    nll: NLL = classifier_nll,
    logits: Callable[[Any, Any], torch.Tensor] | None = classifier_logits,
    vectorize: bool = True,
) -> dict[str, torch.Tensor]:
    """Exact diagonal Fisher {parameter name: float32 tensor} at the model's current weights (module docstring).

    kind: "true" (y sampled from the model's predictive distribution, the Fisher proper), "empirical" (the
    data's labels), "exact" (Σ_c p(c|x) (∂ log p(c|x))², one gradient pass per class: C times the cost).
    data: a tensor pair (x, y), a dataset with `get_batch(index)`, or a map-style dataset of (x, y).
    n_samples: at most this many examples, a seeded choice; `seed` also seeds the sampled labels
    (`sample_indices` then `sample_fisher_labels` on one generator, so a loop can reproduce them).
    Memory: `batch_size` examples are fetched at a time and `chunk_size` per-example gradients held at once
    (vectorised). The model runs in eval mode (BatchNorm uses and keeps its running statistics; every
    submodule's mode is restored after). params: parameter names to cover (default: those with requires_grad).
    nll / logits / vectorize: the task's likelihood (`FisherData`; the defaults are a classifier's).
    """
    if kind not in FISHER_KINDS:
        raise EWCError(f"unknown Fisher kind '{kind}'; choose one of {list(FISHER_KINDS)}")
    if kind != "empirical" and logits is None:
        raise EWCError(f"Fisher kind '{kind}' samples labels from the model's logits, which this task does not "
                       "provide; use kind 'empirical'")
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
    device = torch.device(device) if device is not None else next(iter(all_params.values())).device

    with eval_mode(model):  # BatchNorm uses (and keeps) its running statistics; every mode is restored after
        square_sums = _VectorisedGrads(model, names, device, nll) if vectorize else _LoopGrads(model, names, nll)
        labels_of = None if logits is None else (lambda x: logits(square_sums.forward, x))
        for start in range(0, len(index), batch_size):
            x_b, y_b = fetch(index[start : start + batch_size])
            x_b, y_b = to_device(x_b, device), torch.as_tensor(y_b).long().to(device)
            if kind != "exact":
                y_b = sample_fisher_labels(labels_of, x_b, y_b, kind, generator, chunk_size=max(chunk_size, 256))
            step = chunk_size if vectorize else 1
            for s in range(0, batch_length(x_b), step):
                x, y = _rows(x_b, s, s + step), y_b[s : s + step]
                if kind == "exact":
                    with torch.no_grad():
                        probs = labels_of(x).double().softmax(1)
                    for c in range(probs.shape[1]):
                        square_sums.add(x, torch.full_like(y, c), probs[:, c])
                else:
                    square_sums.add(x, y)
        return {k: (t / len(index)).float().to(all_params[k].device) for k, t in square_sums.total.items()}


class _VectorisedGrads:
    """Σ over examples of squared per-example gradients, by vmap(grad) over functional_call."""

    def __init__(self, model: nn.Module, names: list[str], device: torch.device, nll: NLL) -> None:
        all_params = dict(model.named_parameters())
        self.theta = {k: all_params[k].detach().to(device) for k in names}
        fixed = {k: p.detach().to(device) for k, p in all_params.items() if k not in self.theta}
        buffers = {k: b.to(device) for k, b in model.named_buffers()}
        self.total = {k: torch.zeros(t.shape, dtype=torch.float64, device=device) for k, t in self.theta.items()}

        def call(th: dict[str, torch.Tensor], x: Any) -> torch.Tensor:
            return functional_call(model, ({**th, **fixed}, buffers), (x,)).float()

        def one(th: dict[str, torch.Tensor], x: Any, y: torch.Tensor) -> torch.Tensor:
            return nll(lambda inp: call(th, inp), x.unsqueeze(0), y.unsqueeze(0))

        self.forward = lambda x: call(self.theta, x)
        self.per_example = vmap(grad(one), in_dims=(None, 0, 0))

    def add(self, x: Any, y: torch.Tensor, weight: torch.Tensor | None = None) -> None:
        g = self.per_example(self.theta, x, y)
        for k in self.total:
            sq = g[k].float().square_()  # float32 within a chunk, float64 across chunks
            if weight is not None:
                sq = sq.mul_(weight.float().view(-1, *[1] * (sq.dim() - 1)))
            self.total[k] += sq.sum(0)


class _LoopGrads:
    """Σ over examples of squared per-example gradients, one autograd pass per example."""

    def __init__(self, model: nn.Module, names: list[str], nll: NLL) -> None:
        all_params = dict(model.named_parameters())
        self.model, self.nll = model, nll
        self.params = [all_params[k] for k in names]
        self.total = {k: torch.zeros_like(all_params[k], dtype=torch.float64) for k in names}
        self.forward = model

    def add(self, x: Any, y: torch.Tensor, weight: torch.Tensor | None = None) -> None:
        with torch.enable_grad():
            loss = self.nll(self.model, x, y)
            grads = torch.autograd.grad(loss, self.params, allow_unused=True)
        for t, g in zip(self.total.values(), grads):
            if g is not None:
                sq = g.double().square()
                t += sq * float(weight) if weight is not None else sq


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
