"""Average accuracy, backward transfer and forgetting against hand-computed values on fixed 3×3 matrices."""

from __future__ import annotations

import math

import numpy as np
import pytest

from domainadapt.evaluation import (
    AccuracyMatrix,
    AccuracyMatrixError,
    average_accuracy,
    average_forgetting,
    backward_transfer,
    forgetting,
)

NAN = float("nan")
# R[i, j]: accuracy on task j after training task i; NaN above the diagonal (not trained yet)
R = [[0.90, NAN, NAN],
     [0.80, 0.85, NAN],
     [0.70, 0.75, 0.95]]
# task 0 improves after task 1 (0.6 → 0.9) before dropping: forgetting counts from the best, BWT from the diagonal
R_PEAK = np.array([[0.60, NAN, NAN],
                   [0.90, 0.80, NAN],
                   [0.70, 0.50, 0.90]])


def test_metrics_on_a_fixed_matrix():
    assert average_accuracy(R) == pytest.approx((0.70 + 0.75 + 0.95) / 3)
    assert backward_transfer(R) == pytest.approx(((0.70 - 0.90) + (0.75 - 0.85)) / 2)  # −0.15
    np.testing.assert_allclose(forgetting(R), [0.90 - 0.70, 0.85 - 0.75])
    assert average_forgetting(R) == pytest.approx(0.15)


def test_forgetting_is_measured_from_the_best_earlier_accuracy():
    assert backward_transfer(R_PEAK) == pytest.approx(((0.70 - 0.60) + (0.50 - 0.80)) / 2)  # −0.10
    np.testing.assert_allclose(forgetting(R_PEAK), [0.90 - 0.70, 0.80 - 0.50])
    assert average_forgetting(R_PEAK) == pytest.approx(0.25)
    # An entry above the diagonal is a zero-shot accuracy (task 1 before it was trained), not something the model
    # knew and then lost. This expectation used to be 0.95 − 0.50 = 0.45, encoding a max over every row l < T−1;
    # forgetting is measured after learning (Chaudhry et al. 2018: a_{l,j} exists only for l ≥ j), so the zero-shot
    # entry must change neither forgetting nor BWT.
    with_zero_shot = R_PEAK.copy()
    with_zero_shot[0, 1] = 0.95
    np.testing.assert_allclose(forgetting(with_zero_shot), [0.20, 0.80 - 0.50])
    np.testing.assert_allclose(forgetting(with_zero_shot), forgetting(R_PEAK))
    assert backward_transfer(with_zero_shot) == pytest.approx(backward_transfer(R_PEAK))


def test_forgetting_counts_only_rows_after_the_task_was_learned():
    # 4 tasks; row l = after training task l. Task 2 is learned at row 2 (0.75) and ends at 0.70, but the matrix
    # also holds a zero-shot 0.95 for it in row 1, before it was trained. A max over all earlier rows reports
    # 0.95 − 0.70 = 0.25 for task 2; the after-learning definition (max over rows 2..T−2) gives 0.75 − 0.70 = 0.05.
    R4 = np.array([[0.90, 0.10, 0.20, 0.10],
                   [0.85, 0.88, 0.95, 0.15],
                   [0.80, 0.84, 0.75, 0.12],
                   [0.70, 0.86, 0.70, 0.91]])
    f = forgetting(R4)
    assert f[2] == pytest.approx(0.05)
    assert f[2] != pytest.approx(0.25)
    # task 0: max(0.90, 0.85, 0.80) − 0.70; task 1: max(0.88, 0.84) − 0.86 (its zero-shot 0.10 in row 0 is ignored)
    np.testing.assert_allclose(f, [0.90 - 0.70, 0.88 - 0.86, 0.75 - 0.70])
    assert average_forgetting(R4) == pytest.approx((0.20 + 0.02 + 0.05) / 3)
    # the same with NaN above the diagonal (nothing recorded before a task is trained): identical values
    np.testing.assert_allclose(forgetting(np.where(np.tril(np.ones((4, 4), bool)), R4, NAN)), f)
    acc = AccuracyMatrix(4)
    for i in range(4):
        for j in range(4):
            acc.record(i, j, R4[i, j])
    assert acc.summary()["forgetting"]["task2"] == pytest.approx(0.05)


def test_two_tasks_and_one():
    assert backward_transfer([[0.9, NAN], [0.6, 0.8]]) == pytest.approx(-0.3)
    np.testing.assert_allclose(forgetting([[0.9, NAN], [0.6, 0.8]]), [0.3])
    assert average_accuracy([[0.7]]) == pytest.approx(0.7)


def test_accuracy_matrix_helper():
    acc = AccuracyMatrix(3, names=["mnist", "perm1", "perm2"])
    for i in range(3):
        for j in range(i + 1):
            acc.record(i, j, R[i][j])
    np.testing.assert_allclose(acc.values, np.array(R), equal_nan=True)
    frame = acc.to_frame()
    assert frame.shape == (3, 3) and list(frame.columns) == ["mnist", "perm1", "perm2"]
    assert frame.loc["after perm1", "mnist"] == pytest.approx(0.80) and math.isnan(frame.loc["after mnist", "perm2"])
    summary = acc.summary()
    assert summary["average_accuracy"] == pytest.approx(0.80)
    assert summary["backward_transfer"] == pytest.approx(-0.15)
    assert summary["average_forgetting"] == pytest.approx(0.15)
    assert summary["forgetting"] == pytest.approx({"mnist": 0.20, "perm1": 0.10})
    assert acc.summary(upto=0) == {"tasks": 1, "average_accuracy": pytest.approx(0.90)}
    assert acc.summary(upto=1)["backward_transfer"] == pytest.approx(0.80 - 0.90)


def test_bad_matrices_raise_named_errors():
    with pytest.raises(AccuracyMatrixError, match="square"):
        backward_transfer([[1.0, 0.5]])
    with pytest.raises(AccuracyMatrixError, match="square"):
        average_accuracy(np.zeros((2, 2, 2)))
    with pytest.raises(AccuracyMatrixError, match="at least 2 tasks"):
        backward_transfer([[0.9]])
    with pytest.raises(AccuracyMatrixError, match="at least 2 tasks"):
        forgetting([[0.9]])
    with pytest.raises(AccuracyMatrixError, match="at least 1 tasks"):
        average_accuracy(np.zeros((0, 0)))
    missing = np.array(R)
    missing[1, 1] = NAN
    with pytest.raises(AccuracyMatrixError, match=r"R\[1, 1\]"):
        backward_transfer(missing)
    with pytest.raises(AccuracyMatrixError, match="numeric"):
        average_accuracy([["a", "b"], ["c", "d"]])
    assert issubclass(AccuracyMatrixError, ValueError)
    acc = AccuracyMatrix(2)
    with pytest.raises(AccuracyMatrixError, match=r"record\(2, 0\)"):
        acc.record(2, 0, 0.5)
    with pytest.raises(AccuracyMatrixError, match="finite"):
        acc.record(0, 0, NAN)
    with pytest.raises(AccuracyMatrixError, match="R\\[0, 0\\]"):
        acc.summary()  # nothing recorded yet
    with pytest.raises(AccuracyMatrixError, match="3 task names for 2 tasks"):
        AccuracyMatrix(2, names=["a", "b", "c"])
