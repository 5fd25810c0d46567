"""Label-free validators (domainadapt.validators): every registered one builds, declares its inputs, scores a
fixed input to a finite float and names a missing input; closed forms on fixed numbers; directionality."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_mutual_info_score

from domainadapt.validators import (
    ValidationInputs,
    ValidatorError,
    available_validators,
    build_validator,
    get_validator_class,
)
from domainadapt.validators.dev import dev_risk
from domainadapt.validators.snd import soft_neighbourhood_density

FIELDS = {f.name for f in dataclasses.fields(ValidationInputs)}
K = 4


def fixed_inputs(n_t: int = 24, n_v: int = 20, d: int = 5, seed: int = 0) -> ValidationInputs:
    g = torch.Generator().manual_seed(seed)
    return ValidationInputs(
        target_logits=torch.randn(n_t, K, generator=g),
        target_features=torch.randn(n_t, d, generator=g),
        source_logits=torch.randn(n_v, K, generator=g),
        source_features=torch.randn(n_v, d, generator=g),
        source_labels=torch.randint(0, K, (n_v,), generator=g),
        source_train_features=torch.randn(30, d, generator=g),
    )


def logits_only(logits: torch.Tensor) -> ValidationInputs:
    return ValidationInputs(target_logits=logits)


def test_the_registry_holds_every_validator_file():
    assert set(available_validators()) >= {"source_val", "entropy", "im", "bnm", "snd", "class_ami", "dev", "mmd"}


@pytest.mark.parametrize("name", available_validators())
def test_every_validator_builds_declares_and_scores(name):
    validator = build_validator(name)
    assert validator.needs and set(validator.needs) <= FIELDS
    first = validator(fixed_inputs())
    assert isinstance(first, float) and math.isfinite(first)
    assert validator(fixed_inputs()) == first  # deterministic (seeded where random)


@pytest.mark.parametrize("name", available_validators())
def test_a_missing_needed_field_names_it(name):
    validator = build_validator(name)
    for field in sorted(validator.needs):
        inputs = dataclasses.replace(fixed_inputs(), **{field: None})
        with pytest.raises(ValueError, match=field) as err:
            validator(inputs)
        assert name in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("name", available_validators())
def test_bad_needed_fields_are_refused(name):
    validator = build_validator(name)
    field = sorted(validator.needs)[0]
    good = getattr(fixed_inputs(), field)
    nan = good.clone().double()
    nan[0] = float("nan")
    bad = {"empty": good[:0], "wrong rank": good[None], "non-finite": nan}
    if field != "source_labels":
        bad["non-finite"] = nan
    else:
        del bad["non-finite"]
    for why, value in bad.items():
        with pytest.raises(ValueError, match=field):
            validator(dataclasses.replace(fixed_inputs(), **{field: value}))


def test_mismatched_row_counts_are_refused():
    inputs = dataclasses.replace(fixed_inputs(), source_labels=torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="source_labels|source_logits"):
        build_validator("source_val")(inputs)
    inputs = dataclasses.replace(fixed_inputs(), target_features=torch.zeros(3, 5))
    with pytest.raises(ValueError, match="target_features|target_logits"):
        build_validator("class_ami")(inputs)


# --- closed forms --------------------------------------------------------------------------------------------


def test_entropy_and_im_on_uniform_logits():
    uniform = logits_only(torch.zeros(10, K))
    assert build_validator("entropy")(uniform) == pytest.approx(-math.log(K), abs=1e-12)
    assert build_validator("im")(uniform) == pytest.approx(0.0, abs=1e-12)


def test_im_on_confident_balanced_predictions_is_log_k():
    logits = 60.0 * torch.eye(K).repeat(3, 1)  # each class predicted by 3 rows, with certainty
    assert build_validator("entropy")(logits_only(logits)) == pytest.approx(0.0, abs=1e-9)
    assert build_validator("im")(logits_only(logits)) == pytest.approx(math.log(K), abs=1e-9)
    collapsed = 60.0 * torch.eye(K)[[0] * 12]  # confident but always class 0: IM ≈ 0, entropy still ≈ 0
    assert build_validator("im")(logits_only(collapsed)) == pytest.approx(0.0, abs=1e-9)


def test_entropy_and_im_on_fixed_logits_by_hand():
    logits = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0], [-1.0, 3.0, 1.0]])
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    h = -(p * np.log(p)).sum(1)
    pm = p.mean(0)
    inputs = logits_only(torch.tensor(logits))
    assert build_validator("entropy")(inputs) == pytest.approx(-h.mean(), rel=1e-12)
    assert build_validator("im")(inputs) == pytest.approx(-(pm * np.log(pm)).sum() - h.mean(), rel=1e-12)


def test_bnm_on_one_hot_balanced_matrix():
    # P = 8 one-hot rows, 2 per class: singular values are sqrt(2) each (K = 4 of them) → ‖P‖_* / n = 4√2 / 8
    logits = 60.0 * torch.eye(K).repeat(2, 1)
    assert build_validator("bnm")(logits_only(logits)) == pytest.approx(4 * math.sqrt(2) / 8, abs=1e-9)
    uniform = logits_only(torch.zeros(8, K))  # P = 1/K everywhere: rank 1, its one σ = ‖P‖_F = sqrt(8K)/K
    assert build_validator("bnm")(uniform) == pytest.approx(math.sqrt(8 * K) / K / 8, abs=1e-12)


def _snd_by_hand(p: np.ndarray, tau: float) -> float:
    x = p / np.linalg.norm(p, axis=1, keepdims=True)
    n, total = len(x), 0.0
    for i in range(n):
        s = [float(x[i] @ x[j]) / tau for j in range(n) if j != i]
        e = np.exp(np.array(s) - max(s))
        q = e / e.sum()
        total += float(-(q * np.log(q)).sum())
    return total / n


@pytest.mark.parametrize("block", [1, 2, 1024])
def test_snd_matches_a_double_loop(block):
    logits = np.array([[2.0, 0.1, -1.0], [1.5, 0.0, 0.3], [-0.5, 2.0, 0.0], [0.0, 0.2, 1.7]])
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    want = _snd_by_hand(p, 0.05)
    got = build_validator("snd", block=block)(logits_only(torch.tensor(logits)))
    assert got == pytest.approx(want, rel=1e-10)
    assert build_validator("snd", temperature=0.5, block=block)(logits_only(torch.tensor(logits))) == pytest.approx(
        _snd_by_hand(p, 0.5), rel=1e-10)
    assert soft_neighbourhood_density(torch.tensor(p), 0.05, block) == pytest.approx(want, rel=1e-10)


def test_dev_risk_on_fixed_numbers():
    L = np.array([0.5, 2.0, 1.0, 0.2, 3.0])
    w = np.array([0.4, 1.6, 1.0, 0.5, 1.5])
    n = len(w)
    cov = ((L - L.mean()) * (w - w.mean())).sum() / (n - 1)
    var = ((w - w.mean()) ** 2).sum() / (n - 1)
    eta = -cov / var
    assert dev_risk(L, w) == pytest.approx(L.mean() + eta * w.mean() - eta, rel=1e-12)
    assert dev_risk(L, np.ones(n)) == pytest.approx(L.mean(), rel=1e-12)  # Var(w) = 0: η = 0
    assert dev_risk(L, np.full(n, 2.0)) == pytest.approx(L.mean(), rel=1e-12)


def test_dev_scores_minus_the_risk_of_its_weights():
    from domainadapt.importance import DensityRatioEstimator

    inputs = fixed_inputs()
    est = DensityRatioEstimator("logistic").fit(inputs.source_train_features.double().numpy(),
                                                inputs.target_features.double().numpy())
    w = est.ratio(inputs.source_features.double().numpy())
    ce = torch.nn.functional.cross_entropy(inputs.source_logits.double(), inputs.source_labels, reduction="none")
    assert build_validator("dev")(inputs) == pytest.approx(-dev_risk(w * ce.numpy(), w), rel=1e-9)
    no_train = dataclasses.replace(inputs, source_train_features=None)  # falls back to the validation features
    est = DensityRatioEstimator("logistic").fit(inputs.source_features.double().numpy(),
                                                inputs.target_features.double().numpy())
    w = est.ratio(inputs.source_features.double().numpy())
    assert build_validator("dev")(no_train) == pytest.approx(-dev_risk(w * ce.numpy(), w), rel=1e-9)


def test_class_ami_equals_sklearn_on_the_same_clustering():
    g = torch.Generator().manual_seed(3)
    centres = 4.0 * torch.randn(K, 6, generator=g)
    y = torch.arange(40) % K
    feats = centres[y] + 0.3 * torch.randn(40, 6, generator=g)
    logits = torch.randn(40, K, generator=g)
    logits[:30] += 5.0 * torch.eye(K)[y[:30]]  # 30 of 40 predictions follow the clusters
    x = torch.nn.functional.normalize(feats.double(), dim=1).numpy()
    clusters = KMeans(n_clusters=K, n_init=3, random_state=0).fit_predict(x)
    want = adjusted_mutual_info_score(clusters, logits.argmax(1).numpy())
    inputs = ValidationInputs(target_logits=logits, target_features=feats)
    assert build_validator("class_ami")(inputs) == pytest.approx(want, abs=1e-12)
    raw = KMeans(n_clusters=K, n_init=3, random_state=0).fit_predict(feats.double().numpy())
    assert build_validator("class_ami", normalize=False)(inputs) == pytest.approx(
        adjusted_mutual_info_score(raw, logits.argmax(1).numpy()), abs=1e-12)


def test_source_val_accuracy_and_neg_loss_on_fixed_logits():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0], [1.0, 0.0, 0.5]])
    labels = torch.tensor([0, 1, 0, 2])  # rows 0 and 1 right, rows 2 and 3 wrong
    inputs = ValidationInputs(source_logits=logits, source_labels=labels)
    assert build_validator("source_val")(inputs) == pytest.approx(0.5)
    p = logits.double().softmax(1)
    want = float(torch.log(p[torch.arange(4), labels]).mean())
    assert build_validator("source_val", metric="neg_loss")(inputs) == pytest.approx(want, rel=1e-12)


# --- directionality ------------------------------------------------------------------------------------------


def test_sharper_target_predictions_score_higher_entropy():
    logits = torch.randn(50, K, generator=torch.Generator().manual_seed(1))
    assert build_validator("entropy")(logits_only(3.0 * logits)) > build_validator("entropy")(logits_only(logits))


def test_identical_domains_score_higher_mmd_than_shifted_ones():
    g = torch.Generator().manual_seed(2)
    src, tgt = torch.randn(60, 4, generator=g), torch.randn(60, 4, generator=g)
    same = ValidationInputs(source_features=src, target_features=tgt)
    shifted = ValidationInputs(source_features=src, target_features=tgt + 1.5)
    mmd = build_validator("mmd")
    assert mmd(same) > mmd(shifted)
    small = build_validator("mmd", max_samples=20)  # subsampled: still seeded, still ordered
    assert small(same) == small(same) and small(same) > small(shifted)


def test_a_well_classified_source_split_beats_a_shuffled_one():
    g = torch.Generator().manual_seed(4)
    labels = torch.randint(0, K, (80,), generator=g)
    logits = 4.0 * torch.eye(K)[labels] + 0.5 * torch.randn(80, K, generator=g)
    shuffled = labels[torch.randperm(80, generator=g)]
    for metric in ("acc", "neg_loss"):
        v = build_validator("source_val", metric=metric)
        assert v(ValidationInputs(source_logits=logits, source_labels=labels)) > v(
            ValidationInputs(source_logits=logits, source_labels=shuffled))


# --- no target labels; registry errors -----------------------------------------------------------------------


def test_validation_inputs_have_no_target_label_field():
    assert FIELDS == {"target_logits", "target_features", "source_logits", "source_features", "source_labels",
                      "source_train_features"}
    assert not any(f.startswith("target") and "label" in f for f in FIELDS)
    with pytest.raises(TypeError):
        ValidationInputs(target_labels=torch.zeros(3, dtype=torch.long))  # type: ignore[call-arg]


def test_unknown_validator_name_lists_the_names():
    with pytest.raises(ValidatorError, match="no_such_validator") as err:
        build_validator("no_such_validator")
    assert isinstance(err.value, ValueError) and "entropy" in str(err.value)
    with pytest.raises(ValueError, match="no_such_validator"):
        get_validator_class("no_such_validator")


def test_unknown_option_names_it_and_the_accepted_ones():
    with pytest.raises(ValueError, match="tau") as err:
        build_validator("snd", tau=0.1)
    assert "temperature" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ValueError, match="bogus"):
        build_validator("entropy", bogus=1)
    with pytest.raises(ValueError, match="metric"):
        build_validator("source_val", metric="f1")


def test_an_option_less_validator_says_it_takes_no_options():
    with pytest.raises(ValueError, match="no options"):
        build_validator("entropy", bogus=1)
