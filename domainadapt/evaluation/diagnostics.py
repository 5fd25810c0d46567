"""Where a transferred model goes wrong on the target: per-class accuracy, confusion matrix, and the predicted
class distribution against the target's class prior.

A source-trained model under label shift or a large domain gap often predicts the classes that were frequent
in the SOURCE (its prior leaks into the decision rule; Lipton et al. 2018, "Detecting and Correcting for Label
Shift with Black Box Predictors", sec. 2), or collapses onto a few classes. The distance between the predicted
class distribution q and the target prior p shows it without target labels beyond the class counts:
total variation TV = ½ Σ|q_k − p_k|, KL(p ‖ q) (large when q misses classes p has; q smoothed by `eps`).
`collapse_check` asks whether predictions pile onto the source's majority classes more than the target has them.

Functions take predictions and labels (integer arrays), or a model and a dataset (`predict`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import Dataset

from ..data.streams import fetch_batch
from ..inference import Predictions, run_loop


def _labels(x: Any, what: str, num_classes: int | None = None) -> np.ndarray:
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if arr.ndim != 1 or len(arr) == 0:
        raise ValueError(f"{what} must be a non-empty 1-D array of class indices, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{what} must hold integer class indices, got dtype {arr.dtype}")
    if arr.min() < 0 or (num_classes is not None and arr.max() >= num_classes):
        raise ValueError(f"{what} must lie in [0, {num_classes}), found [{arr.min()}, {arr.max()}]")
    return arr.astype(np.int64)


def _pair(predictions: Any, labels: Any, num_classes: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    pred, true = _labels(predictions, "predictions"), _labels(labels, "labels")
    if len(pred) != len(true):
        raise ValueError(f"{len(pred)} predictions for {len(true)} labels")
    k = int(max(pred.max(), true.max()) + 1) if num_classes is None else int(num_classes)
    _labels(pred, "predictions", k)
    _labels(true, "labels", k)
    return pred, true, k


def _names(num_classes: int, class_names: Sequence[str] | None) -> list[str]:
    if class_names is None:
        return [str(k) for k in range(num_classes)]
    if len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
    return [str(c) for c in class_names]


def predict(model: nn.Module, dataset: Dataset, *, batch_size: int = 500,
            device: str | torch.device = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """(predicted classes, true labels) of every row of `dataset`, in order (`inference.Predictions`); the
    model's train/eval flags are restored afterwards."""
    pred, true = run_loop(model, dataset, Predictions(), device=device, batch_size=batch_size)
    return pred.numpy(), true.numpy()


def class_distribution(labels: Any, num_classes: int) -> np.ndarray:
    """Fraction of rows per class (length num_classes, sums to 1)."""
    arr = _labels(labels, "labels", num_classes)
    return np.bincount(arr, minlength=num_classes) / len(arr)


def distribution_distances(predicted: Any, prior: Any, *, eps: float = 1e-6) -> dict[str, float]:
    """Total variation ½Σ|q−p| and KL(p ‖ q) (q smoothed: (q+eps)/(1+K·eps)) between the predicted class
    distribution q and the class prior p."""
    q, p = np.asarray(predicted, dtype=np.float64), np.asarray(prior, dtype=np.float64)
    if q.shape != p.shape or q.ndim != 1:
        raise ValueError(f"distributions must be 1-D of the same length, got {q.shape} and {p.shape}")
    for name, d in (("predicted", q), ("prior", p)):
        if (d < 0).any() or not np.isclose(d.sum(), 1.0):
            raise ValueError(f"{name} distribution must be non-negative and sum to 1, sums to {d.sum()}")
    qs = (q + eps) / (1 + len(q) * eps)
    nz = p > 0
    return {"tv": float(0.5 * np.abs(q - p).sum()), "kl": float(np.sum(p[nz] * np.log(p[nz] / qs[nz])))}


def prediction_shift(
    predictions: Any,
    labels: Any,
    num_classes: int | None = None,
    *,
    source_labels: Any = None,
    class_names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Per class: the target prior (from `labels`), the predicted fraction, their difference, and the source
    prior when `source_labels` are given. Rows are classes."""
    pred, true, k = _pair(predictions, labels, num_classes)
    frame = pd.DataFrame({"target_prior": class_distribution(true, k), "predicted": class_distribution(pred, k)},
                         index=pd.Index(_names(k, class_names), name="class"))
    frame["excess"] = frame["predicted"] - frame["target_prior"]
    if source_labels is not None:
        frame["source_prior"] = class_distribution(source_labels, k)
    return frame


def collapse_check(predicted: Any, target_prior: Any, source_prior: Any, *, threshold: float = 0.1) -> dict[str, Any]:
    """Have predictions collapsed onto the source's majority classes?

    Majority classes: those with source prior > 1/K. `excess` = predicted mass on them − target-prior mass on
    them; `collapsed` when excess > threshold. A uniform source has no majority classes (never collapsed).
    Also reports the effective number of predicted classes exp(H(q)) (K when q is uniform, 1 when collapsed)."""
    q, p, s = (np.asarray(a, dtype=np.float64) for a in (predicted, target_prior, source_prior))
    if not (q.shape == p.shape == s.shape) or q.ndim != 1:
        raise ValueError(f"distributions must be 1-D of one length, got {q.shape}, {p.shape}, {s.shape}")
    k = len(q)
    majority = np.flatnonzero(s > 1.0 / k + 1e-12)
    excess = float(q[majority].sum() - p[majority].sum()) if len(majority) else 0.0
    nz = q[q > 0]
    return {
        "majority_classes": majority.tolist(),
        "predicted_mass": float(q[majority].sum()),
        "target_mass": float(p[majority].sum()),
        "excess": excess,
        "collapsed": bool(excess > threshold),
        "effective_classes": float(np.exp(-(nz * np.log(nz)).sum())),
    }


def per_class_accuracy(predictions: Any, labels: Any, num_classes: int | None = None, *,
                       class_names: Sequence[str] | None = None) -> pd.DataFrame:
    """Per class: support (rows with that label), correct, accuracy (recall; NaN for a class with no rows)."""
    pred, true, k = _pair(predictions, labels, num_classes)
    support = np.bincount(true, minlength=k)
    correct = np.bincount(true[pred == true], minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(support > 0, correct / np.maximum(support, 1), np.nan)
    return pd.DataFrame({"support": support, "correct": correct, "accuracy": acc},
                        index=pd.Index(_names(k, class_names), name="class"))


def confusion_matrix(predictions: Any, labels: Any, num_classes: int | None = None, *,
                     class_names: Sequence[str] | None = None, normalize: str | None = None) -> pd.DataFrame:
    """Counts C[i, j] = rows with true class i predicted as j (rows: true, columns: predicted).
    normalize="true" divides each row by its support (NaN rows for absent classes), "all" by the total."""
    if normalize not in (None, "true", "all"):
        raise ValueError(f"normalize must be None, 'true' or 'all', got {normalize!r}")
    pred, true, k = _pair(predictions, labels, num_classes)
    counts = np.bincount(true * k + pred, minlength=k * k).reshape(k, k).astype(np.float64 if normalize else np.int64)
    if normalize == "true":
        with np.errstate(invalid="ignore", divide="ignore"):
            counts = counts / counts.sum(1, keepdims=True)
    elif normalize == "all":
        counts = counts / counts.sum()
    names = _names(k, class_names)
    return pd.DataFrame(counts, index=pd.Index(names, name="true"), columns=pd.Index(names, name="predicted"))


def diagnose(model: nn.Module, target: Dataset, *, source: Dataset | None = None, batch_size: int = 500,
             device: str | torch.device = "cpu", threshold: float = 0.1) -> dict[str, Any]:
    """Everything above for a model on a (labelled) target set: {"shift", "per_class", "confusion",
    "distances", and with `source` (its labels give the source prior) "collapse"}."""
    pred, true = predict(model, target, batch_size=batch_size, device=device)
    names = getattr(target, "classes", None)
    k = len(names) if names is not None else int(max(pred.max(), true.max()) + 1)
    source_labels = None
    if source is not None:
        source_labels = _source_labels(source)
    shift = prediction_shift(pred, true, k, source_labels=source_labels, class_names=names)
    out: dict[str, Any] = {
        "shift": shift,
        "per_class": per_class_accuracy(pred, true, k, class_names=names),
        "confusion": confusion_matrix(pred, true, k, class_names=names),
        "distances": distribution_distances(shift["predicted"].to_numpy(), shift["target_prior"].to_numpy()),
    }
    if source_labels is not None:
        out["collapse"] = collapse_check(shift["predicted"].to_numpy(), shift["target_prior"].to_numpy(),
                                         shift["source_prior"].to_numpy(), threshold=threshold)
    return out


def _source_labels(dataset: Dataset) -> np.ndarray:
    labels = getattr(dataset, "labels", None)
    if isinstance(labels, torch.Tensor):
        return labels.cpu().numpy()
    return torch.as_tensor(fetch_batch(dataset, torch.arange(len(dataset)))[1]).numpy()  # type: ignore[arg-type]
