"""The one evaluation loop: every no-grad pass of a model over data runs through `run_loop`.

The loop owns what every such pass needs: eval mode (restored afterwards, module by module, also on error),
`torch.no_grad`, rank sharding of a dataset's rows with the results all-reduced, moving batches to the device
(pinned + non-blocking on CUDA, channels_last), and autocast. What is computed per batch is a `Measure`:
  ClassifierMetrics  accuracy, macro-F1 and mean cross-entropy (the trainer's default evaluation)
  Predictions        predicted classes and true labels of every row, in order (diagnostics)
  Collect            any per-batch function's output, concatenated (features, pooled text embeddings)
  LayerOutputs       the outputs of named modules, captured with forward hooks (per-layer domain gaps)
The masked-LM loss is one more measure, in `domainadapt.tasks.masked_lm`.

Data may be a dataset (anything with `get_batch(index)`, or a torch map-style Dataset of (x, y) pairs: its rows
are sharded over ranks), a tensor (split into `batch_size` rows), or an iterable of batches (a DataLoader, a list
of dicts): tensors, (inputs, labels, ...) tuples, or dicts of model keyword arguments.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from .data.streams import fetch_batch
from .distributed import DistContext


class UnknownLayerError(ValueError):
    """A layer name that is not a module of the model."""


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """`module.eval()` for the block; every submodule's own train/eval flag is restored after (a frozen
    BatchNorm kept in eval mode during training stays so), also when the block raises."""
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, training in flags:
            m.training = training


def to_device(x: Any, device: torch.device, channels_last: bool = False) -> Any:
    """Move a batch (tensor, dict of tensors, tuple/list, None, plain values) to `device`; pinned + non-blocking
    on CUDA; 4-d tensors to channels_last when asked."""
    if x is None or not isinstance(x, (Tensor, Mapping, tuple, list)):
        return x
    if isinstance(x, Mapping):
        return {k: to_device(v, device, channels_last) for k, v in x.items()}
    if isinstance(x, (tuple, list)):
        return type(x)(to_device(v, device, channels_last) for v in x)
    if device.type == "cuda" and x.device.type == "cpu":
        x = x.pin_memory()
    x = x.to(device, non_blocking=True)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def batch_length(x: Any) -> int:
    """Rows of a batch: a tensor, or a dict of tensors (tokenised text)."""
    if isinstance(x, Mapping):
        return len(next(iter(x.values())))
    return x.shape[0]


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """torch.autocast for `dtype` on the device's type; a no-op for None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def model_device(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


class Measure(Protocol):
    """What one evaluation pass computes. `forward` runs under autocast (the model's work); `accumulate` runs
    outside it on the float results; `compute` reduces over ranks once, at the end. An optional
    `begin(model)` is called before the first batch."""

    def forward(self, model: nn.Module, x: Any, y: Any) -> Any: ...

    def accumulate(self, out: Any, y: Any, index: Tensor | None) -> None: ...

    def compute(self, dist: DistContext, device: torch.device) -> Any: ...


def features_and_logits(model: nn.Module, batches: Iterable[Any], *, device: torch.device,
                        autocast_dtype: torch.dtype | None = None,
                        out_device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """`model.features_and_logits` of every input batch (moved to `device`, under autocast), as float32 and
    concatenated in order; on `out_device` when given (the CPU, to keep a whole dataset's rows off the GPU). Call
    it under the no_grad and train / eval mode the caller wants."""
    feats, logits = [], []
    for x in batches:
        with autocast(device, autocast_dtype):
            f, z = model.features_and_logits(to_device(x, device))
        feats.append(f.float() if out_device is None else f.float().to(out_device))
        logits.append(z.float() if out_device is None else z.float().to(out_device))
    return torch.cat(feats), torch.cat(logits)


def is_dataset(data: Any) -> bool:
    return not isinstance(data, Tensor) and (callable(getattr(data, "get_batch", None)) or isinstance(data, Dataset))


def iter_batches(data: Any, batch_size: int, dist: DistContext | None = None) -> Iterator[tuple[Tensor | None, Any, Any]]:
    """(row index or None, inputs, labels or None) per batch; a dataset's rows are sharded over the ranks of `dist`."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    if is_dataset(data):
        dist = dist or DistContext()
        index = torch.arange(dist.rank, len(data), dist.world_size)
        for start in range(0, len(index), batch_size):
            chunk = index[start : start + batch_size]
            x, y = fetch_batch(data, chunk)
            yield chunk, x, y
    elif isinstance(data, Tensor):
        for start in range(0, data.shape[0], batch_size):
            yield None, data[start : start + batch_size], None
    else:
        try:
            items = iter(data)
        except TypeError:
            raise TypeError(f"data must be a dataset, a tensor, a DataLoader or an iterable of batches; "
                            f"got {type(data).__name__}") from None
        for batch in items:
            if isinstance(batch, (tuple, list)):
                if not batch:
                    raise ValueError("got an empty batch tuple")
                yield None, batch[0], batch[1] if len(batch) > 1 else None
            else:
                yield None, batch, None


def run_loop(
    model: nn.Module,
    data: Any,
    measure: Measure,
    *,
    device: torch.device | str | None = None,
    batch_size: int = 500,
    dist: DistContext | None = None,
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> Any:
    """Run `measure` over `data` with `model` in eval mode under no_grad; return `measure.compute(dist)`.
    device: where batches go (default: where the model's parameters are)."""
    dist = dist or DistContext()
    device = model_device(model) if device is None else torch.device(device)
    begin = getattr(measure, "begin", None)
    if callable(begin):
        begin(model)
    with torch.no_grad(), eval_mode(model):
        for index, x, y in iter_batches(data, batch_size, dist):
            x, y = to_device(x, device, channels_last), to_device(y, device)
            with autocast(device, autocast_dtype):
                out = measure.forward(model, x, y)
            measure.accumulate(out, y, index)
    return measure.compute(dist, device)


# ----------------------------------------------------------------------------------------------- measures


def macro_f1(confusion: Tensor) -> float:
    """Mean over classes present (as truth or prediction) of 2TP / (2TP + FP + FN), as scikit-learn's
    f1_score(average="macro") with zero_division=0 over the labels that occur."""
    tp = confusion.diagonal()
    support = confusion.sum(1) + confusion.sum(0)  # = 2TP + FP + FN
    present = support > 0
    return float((2 * tp[present] / support[present]).mean()) if bool(present.any()) else 0.0


class ClassifierMetrics:
    """Accuracy, macro-F1 and mean cross-entropy of a classifier (`model(x)` → logits); confusion counts and the
    loss sum are all-reduced, so N ranks report what one process would."""

    def __init__(self, num_classes: int | None = None) -> None:
        self.num_classes = num_classes
        self.confusion: Tensor | None = None  # [true, predicted] counts
        self.loss_sum: Tensor | None = None

    def begin(self, model: nn.Module) -> None:
        if self.num_classes is None:
            self.num_classes = getattr(model, "num_classes", None)

    def forward(self, model: nn.Module, x: Any, y: Tensor) -> Tensor:
        return model(x)

    def accumulate(self, logits: Tensor, y: Tensor, index: Tensor | None) -> None:
        logits = logits.float()
        k = logits.shape[1]
        if self.confusion is None:
            self.confusion = torch.zeros(k, k, dtype=torch.float64, device=logits.device)
            self.loss_sum = torch.zeros(1, dtype=torch.float64, device=logits.device)
        pairs = y * k + logits.argmax(1)
        self.confusion += torch.bincount(pairs, minlength=self.confusion.numel()).view_as(self.confusion)
        self.loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum")

    def compute(self, dist: DistContext, device: torch.device) -> dict[str, float]:
        if self.confusion is None:  # this rank got no rows; the others' counts still arrive through the all-reduce
            k = int(self.num_classes or 1)
            self.confusion = torch.zeros(k, k, dtype=torch.float64, device=device)
            self.loss_sum = torch.zeros(1, dtype=torch.float64, device=device)
        dist.all_reduce_sum(self.confusion)
        dist.all_reduce_sum(self.loss_sum)
        count = float(self.confusion.sum())
        return {"acc": float(self.confusion.diagonal().sum()) / count, "macro_f1": macro_f1(self.confusion),
                "loss": float(self.loss_sum) / count}


def evaluate(model: nn.Module, dataset: Any, *, device: torch.device, batch_size: int = 500,
             dist_ctx: DistContext | None = None, autocast_dtype: torch.dtype | None = None,
             channels_last: bool = False) -> dict[str, float]:
    """Accuracy, macro-F1 and mean cross-entropy of a classifier on a dataset (`ClassifierMetrics`), rows
    sharded over ranks. Inputs may be image tensors or dicts of token tensors (`model(x)` takes either)."""
    return run_loop(model, dataset, ClassifierMetrics(getattr(model, "num_classes", None)), device=device,
                    batch_size=batch_size, dist=dist_ctx, autocast_dtype=autocast_dtype, channels_last=channels_last)


class _Gathered:
    """Rows collected per batch; under DDP every rank's rows are gathered and put back in dataset order."""

    def __init__(self) -> None:
        self.parts: list[Tensor] = []
        self.indices: list[Tensor] = []

    def _rows(self, dist: DistContext) -> Tensor | None:
        local = torch.cat(self.parts) if self.parts else None
        if not dist.enabled:
            return local
        index = torch.cat(self.indices) if self.indices else torch.empty(0, dtype=torch.long)
        gathered = [(p, i) for p, i in dist.all_gather_object((None if local is None else local.cpu(), index))
                    if p is not None]
        if not gathered:
            return None
        order = torch.cat([i for _, i in gathered]).argsort()
        return torch.cat([p for p, _ in gathered])[order].to(self.parts[0].device if self.parts else "cpu")


class Collect(_Gathered):
    """`fn(model, x)` per batch (a tensor of rows), concatenated on `out_device` (e.g. features)."""

    def __init__(self, fn: Callable[[nn.Module, Any], Tensor], out_device: torch.device | str = "cpu") -> None:
        super().__init__()
        self.fn, self.out_device = fn, torch.device(out_device)

    def forward(self, model: nn.Module, x: Any, y: Any) -> Tensor:
        return self.fn(model, x)

    def accumulate(self, out: Tensor, y: Any, index: Tensor | None) -> None:
        self.parts.append(out.detach().float().to(self.out_device))
        if index is not None:
            self.indices.append(index)

    def compute(self, dist: DistContext, device: torch.device) -> Tensor:
        rows = self._rows(dist)
        if rows is None:
            raise ValueError("data yielded no batches")
        return rows


class Predictions(_Gathered):
    """(predicted classes, true labels) of every row, in order, as CPU int64 tensors."""

    def forward(self, model: nn.Module, x: Any, y: Any) -> Tensor:
        return model(x).argmax(1)

    def accumulate(self, out: Tensor, y: Any, index: Tensor | None) -> None:
        self.parts.append(torch.stack([out.cpu().long(), torch.as_tensor(y).cpu().long()], 1))
        if index is not None:
            self.indices.append(index)

    def compute(self, dist: DistContext, device: torch.device) -> tuple[Tensor, Tensor]:
        rows = self._rows(dist)
        if rows is None:
            raise ValueError("predict: the dataset is empty")
        return rows[:, 0], rows[:, 1]


def _first_tensor(out: Any, layer: str) -> Tensor:
    if isinstance(out, Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor):
        return out[0]  # also HF ModelOutput, which indexes like a tuple
    try:
        first = out[0]
        if isinstance(first, Tensor):
            return first
    except (TypeError, KeyError, IndexError):
        pass
    raise TypeError(f"layer {layer!r} returned {type(out).__name__}, not a tensor (or a tuple starting with one)")


class LayerOutputs:
    """The output of each named module, flattened to rows × d, captured by forward hooks during the pass
    (use as a context manager: the hooks are removed on exit, also on error). A module that runs several
    times in one forward keeps its last output; tuple outputs keep their first tensor. Dict batches are
    passed as `model(**batch)`."""

    def __init__(self, model: nn.Module, layers: Sequence[str], out_device: torch.device | str = "cpu") -> None:
        self.names = list(layers)
        if not self.names:
            raise ValueError("layers is empty; name at least one module")
        modules = dict(model.named_modules())
        unknown = [n for n in self.names if n not in modules]
        if unknown:
            available = [n for n in modules if n]
            shown = ", ".join(available[:200]) + (f", ... ({len(available) - 200} more)" if len(available) > 200 else "")
            raise UnknownLayerError(f"unknown layer name(s) {unknown}; available: {shown}")
        self.modules, self.out_device = modules, torch.device(out_device)
        self.current: dict[str, Tensor] = {}
        self.collected: dict[str, list[Tensor]] = {n: [] for n in self.names}
        self.handles: list[Any] = []

    def __enter__(self) -> LayerOutputs:
        def make_hook(name: str):
            def hook(_module: nn.Module, _inp: Any, out: Any) -> None:
                self.current[name] = _first_tensor(out, name).detach()
            return hook

        self.handles = [self.modules[n].register_forward_hook(make_hook(n)) for n in self.names]
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    def forward(self, model: nn.Module, x: Any, y: Any) -> None:
        self.current.clear()
        model(**x) if isinstance(x, dict) else model(x)

    def accumulate(self, out: Any, y: Any, index: Tensor | None) -> None:
        for n in self.names:
            if n not in self.current:
                raise RuntimeError(f"layer {n!r} did not run in the forward pass")
            f = self.current[n]
            self.collected[n].append(f.reshape(f.shape[0], -1).to(self.out_device))

    def compute(self, dist: DistContext, device: torch.device) -> dict[str, Tensor]:
        if not self.collected[self.names[0]]:
            raise ValueError("data yielded no batches")
        return {n: torch.cat(self.collected[n]) for n in self.names}


def extract_features(model: nn.Module, data: Any, layers: str | Sequence[str], *, batch_size: int = 256,
                     device: torch.device | str | None = None, out_device: torch.device | str = "cpu") -> dict[str, Tensor]:
    """Each named layer's output over `data`, flattened to n×d (`LayerOutputs` in `run_loop`).

    ``layers``: names from ``model.named_modules()``; an unknown name raises `UnknownLayerError` listing the
    available names. ``device``: where to run (the model is moved there); default: where its parameters are.
    Eval mode and no_grad; the model's modes are restored and the hooks removed afterwards, also on error."""
    names = [layers] if isinstance(layers, str) else list(layers)
    capture = LayerOutputs(model, names, out_device)
    if device is not None:
        model.to(torch.device(device))
    with capture:
        return run_loop(model, data, capture, device=device, batch_size=batch_size)
