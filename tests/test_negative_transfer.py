"""Negative-transfer gap NTG = ε_T(S→T) − ε_T(T only) (Wang et al. 2019) with its 95% interval over seeds."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from scipy import stats

from domainadapt.evaluation import (
    TransferGap,
    negative_transfer_gap,
    negative_transfer_table,
)

TRANSFER = {0: 0.30, 1: 0.25, 2: 0.35}  # target errors of the source→target model, by seed
TARGET = {0: 0.20, 1: 0.22, 2: 0.27}  # target errors of the target-only control


def test_paired_gap_equals_the_hand_computed_interval():
    gap = negative_transfer_gap(TRANSFER, {2: 0.27, 0: 0.20, 1: 0.22})  # seed order does not matter
    # per-seed differences 0.10, 0.03, 0.08: mean 0.07, sd sqrt((0.03² + 0.04² + 0.01²) / 2) = sqrt(0.0013)
    half = stats.t.ppf(0.975, df=2) * math.sqrt(0.0013) / math.sqrt(3)
    assert stats.t.ppf(0.975, df=2) == pytest.approx(4.302652729911275)
    assert gap.paired and gap.df == 2 and gap.n_transfer == gap.n_target == 3
    assert gap.gap == pytest.approx(0.07)
    assert (gap.low, gap.high) == pytest.approx((0.07 - half, 0.07 + half))
    assert (gap.low, gap.high) == pytest.approx((-0.019566858950295973, 0.15956685895029593))  # = scipy ttest_rel
    assert not gap.negative and not gap.positive  # the interval covers 0
    assert gap.as_dict()["negative"] is False


def test_welch_gap_when_the_seeds_differ():
    transfer, target = [0.30, 0.25, 0.35], [0.20, 0.22, 0.27, 0.21]
    gap = negative_transfer_gap(transfer, target)
    ma, mb = 0.30, 0.225
    va = ((0.0) ** 2 + 0.05**2 + 0.05**2) / 2 / 3  # s_a² / n_a
    vb = sum((x - mb) ** 2 for x in target) / 3 / 4  # s_b² / n_b
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 3)
    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    assert not gap.paired and gap.df == pytest.approx(df) and gap.df == pytest.approx(3.1515055867685136)
    assert gap.gap == pytest.approx(ma - mb)
    assert (gap.low, gap.high) == pytest.approx((ma - mb - half, ma - mb + half))
    ci = stats.ttest_ind(transfer, target, equal_var=False).confidence_interval()
    assert (gap.low, gap.high) == pytest.approx((ci.low, ci.high))
    # mappings over different seeds, or paired=False, also give Welch
    assert not negative_transfer_gap(TRANSFER, {5: 0.2, 6: 0.22, 7: 0.27}).paired
    assert not negative_transfer_gap(TRANSFER, TARGET, paired=False).paired


def test_accuracies_significance_and_errors():
    acc_transfer = {s: 1 - e for s, e in TRANSFER.items()}
    acc_target = {s: 1 - e for s, e in TARGET.items()}
    gap = negative_transfer_gap(acc_transfer, acc_target, accuracies=True)
    assert gap.gap == pytest.approx(0.07)  # still an error difference: positive = negative transfer
    clear = negative_transfer_gap({0: 0.5, 1: 0.52, 2: 0.51}, {0: 0.2, 1: 0.21, 2: 0.2})
    assert clear.negative and not clear.positive and isinstance(clear, TransferGap)
    same = negative_transfer_gap({0: 0.3, 1: 0.4}, {0: 0.2, 1: 0.3})  # constant differences: a zero-width interval
    assert (same.low, same.high) == pytest.approx((0.1, 0.1))
    with pytest.raises(ValueError, match="at least 2 values"):
        negative_transfer_gap([0.3], [0.2, 0.3])
    with pytest.raises(ValueError, match="paired=True needs both arms"):
        negative_transfer_gap([0.3, 0.2], [0.2, 0.3], paired=True)
    with pytest.raises(ValueError, match="confidence must be in"):
        negative_transfer_gap(TRANSFER, TARGET, confidence=95)


def test_table_from_a_runs_frame():
    rows = [{"strategy": "scratch", "seed": s, "target_test/acc": 1 - e} for s, e in TARGET.items()]
    rows += [{"strategy": "full", "seed": s, "target_test/acc": 1 - e} for s, e in TRANSFER.items()]
    table = negative_transfer_table(pd.DataFrame(rows), arm="strategy", control="scratch")
    assert table["strategy"].tolist() == ["full"]
    assert table.loc[0, "gap"] == pytest.approx(0.07) and bool(table.loc[0, "paired"])
    with pytest.raises(ValueError, match="no control rows"):
        negative_transfer_table(pd.DataFrame(rows), arm="strategy", control="feature_extraction")
    with pytest.raises(ValueError, match="columns \\['source'\\]"):
        negative_transfer_table(pd.DataFrame(rows), arm="strategy", control="scratch", by=["source"])
