"""Predicted-class distribution vs the target prior, collapse onto source majority classes, per-class accuracy,
confusion matrix: hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from domainadapt.data.domain import DigitDomain
from domainadapt.evaluation.diagnostics import (
    class_distribution,
    collapse_check,
    confusion_matrix,
    diagnose,
    distribution_distances,
    per_class_accuracy,
    predict,
    prediction_shift,
)

LABELS = np.array([0, 0, 1, 1, 2, 2])
PREDS = np.array([0, 0, 0, 1, 0, 2])  # class 0 over-predicted


def test_per_class_accuracy_and_confusion():
    acc = per_class_accuracy(PREDS, LABELS, 4, class_names=["a", "b", "c", "d"])
    assert acc["support"].tolist() == [2, 2, 2, 0]
    assert acc["correct"].tolist() == [2, 1, 1, 0]
    assert acc["accuracy"].tolist()[:3] == [1.0, 0.5, 0.5] and np.isnan(acc.loc["d", "accuracy"])
    cm = confusion_matrix(PREDS, LABELS)
    assert cm.to_numpy().tolist() == [[2, 0, 0], [1, 1, 0], [1, 0, 1]]
    assert cm.index.name == "true" and cm.columns.name == "predicted"
    np.testing.assert_allclose(confusion_matrix(PREDS, LABELS, normalize="true").to_numpy(),
                               [[1, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5]])
    assert confusion_matrix(PREDS, LABELS, normalize="all").to_numpy().sum() == pytest.approx(1.0)


def test_prediction_shift_and_distances():
    shift = prediction_shift(PREDS, LABELS, source_labels=[0, 0, 0, 0, 1, 2])
    np.testing.assert_allclose(shift["target_prior"], [1 / 3] * 3)
    np.testing.assert_allclose(shift["predicted"], [4 / 6, 1 / 6, 1 / 6])
    np.testing.assert_allclose(shift["excess"], [1 / 3, -1 / 6, -1 / 6])
    np.testing.assert_allclose(shift["source_prior"], [4 / 6, 1 / 6, 1 / 6])
    d = distribution_distances(shift["predicted"], shift["target_prior"], eps=0.0)
    assert d["tv"] == pytest.approx(1 / 3)
    assert d["kl"] == pytest.approx(sum(1 / 3 * np.log((1 / 3) / q) for q in (4 / 6, 1 / 6, 1 / 6)))
    assert distribution_distances([0.5, 0.5], [0.5, 0.5]) == {"tv": 0.0, "kl": pytest.approx(0.0, abs=1e-9)}
    with pytest.raises(ValueError, match="sum to 1"):
        distribution_distances([0.5, 0.6], [0.5, 0.5])


def test_collapse_onto_source_majority_classes():
    source = np.array([0.7, 0.1, 0.1, 0.1])
    target = np.array([0.25] * 4)
    collapsed = collapse_check(np.array([0.9, 0.1, 0.0, 0.0]), target, source)
    assert collapsed["majority_classes"] == [0]
    assert collapsed["excess"] == pytest.approx(0.65) and collapsed["collapsed"]
    assert collapsed["effective_classes"] == pytest.approx(np.exp(-(0.9 * np.log(0.9) + 0.1 * np.log(0.1))))
    healthy = collapse_check(np.array([0.3, 0.25, 0.25, 0.2]), target, source)
    assert healthy["excess"] == pytest.approx(0.05) and not healthy["collapsed"]
    assert collapse_check(np.array([1.0, 0, 0, 0]), target, target)["majority_classes"] == []  # uniform source


def test_bad_inputs():
    with pytest.raises(ValueError, match="3 predictions for 2 labels"):
        per_class_accuracy([0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="integer class indices"):
        confusion_matrix([0.5, 1.0], [0, 1])
    with pytest.raises(ValueError, match=r"must lie in \[0, 2\)"):
        confusion_matrix([0, 2], [0, 1], 2)
    with pytest.raises(ValueError, match="normalize must be"):
        confusion_matrix([0, 1], [0, 1], normalize="rows")
    assert class_distribution([1, 1, 0], 3).tolist() == [1 / 3, 2 / 3, 0.0]


class _AlwaysZero(nn.Module):
    """Predicts class 0 for every image; has a BatchNorm to check that train/eval flags come back."""

    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm1d(3)

    def forward(self, x):
        logits = torch.zeros(len(x), 3)
        logits[:, 0] = 1.0
        return logits + 0 * self.bn(x.flatten(2).mean(2))


def test_diagnose_a_model_on_a_dataset():
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    target = DigitDomain("t", torch.zeros(6, 3, 4, 4, dtype=torch.uint8), labels, ("a", "b", "c"))
    source = DigitDomain("s", torch.zeros(4, 3, 4, 4, dtype=torch.uint8), torch.tensor([0, 0, 0, 1]), ("a", "b", "c"))
    model = _AlwaysZero().train()
    pred, true = predict(model, target, batch_size=4)
    assert pred.tolist() == [0] * 6 and true.tolist() == labels.tolist()
    assert model.training and model.bn.training
    out = diagnose(model, target, source=source)
    assert out["per_class"]["accuracy"].tolist() == [1.0, 0.0, 0.0]
    assert out["confusion"].loc["b", "a"] == 2
    assert out["distances"]["tv"] == pytest.approx(2 / 3)
    assert out["collapse"]["collapsed"] and out["collapse"]["majority_classes"] == [0]
    assert list(out["shift"].index) == ["a", "b", "c"]
