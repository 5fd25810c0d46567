"""The data pieces of transfer studies: a label-shuffled control source, a few labelled target examples per
class, and the macro-F1 the evaluator reports."""

from __future__ import annotations

import pytest
import torch

from domainadapt.data import DomainError, load_domain, load_splits
from domainadapt.data.registry import is_domain_name
from domainadapt.tasks.image_classification import per_class_subset
from domainadapt.train import TrainConfig
from domainadapt.train.config import ConfigError
from domainadapt.inference import macro_f1


def test_shuffled_domain_keeps_images_and_label_counts_but_not_the_pairing():
    plain = load_domain("optdigits", image_size=16)
    shuffled = load_domain("shuffled:optdigits", image_size=16)
    assert torch.equal(plain.images, shuffled.images)
    assert torch.equal(plain.class_counts(), shuffled.class_counts())
    agree = (plain.labels == shuffled.labels).float().mean().item()
    assert agree < 0.2  # ~1/10 by chance
    assert torch.equal(shuffled.labels, load_domain("shuffled:optdigits", image_size=16).labels)  # fixed seed
    assert is_domain_name("shuffled:optdigits") and not is_domain_name("shuffled:nosuch")
    with pytest.raises(DomainError, match="unknown domain 'nosuch'"):
        load_domain("shuffled:nosuch", image_size=16)


def test_per_class_subset_takes_k_of_every_class_seeded():
    train = load_splits("optdigits", image_size=16)["train"]
    keep = per_class_subset(train.labels, 3, seed=5)
    assert torch.equal(torch.bincount(train.labels[keep], minlength=10), torch.full((10,), 3))
    assert torch.equal(keep, per_class_subset(train.labels, 3, seed=5))
    assert not torch.equal(keep, per_class_subset(train.labels, 3, seed=6))
    with pytest.raises(ConfigError, match="target_per_class"):
        TrainConfig(target_per_class=0).validate()
    assert "target_per_class" not in TrainConfig().key_dict()


def test_macro_f1_matches_scikit_learn():
    from sklearn.metrics import f1_score

    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 5, (300,), generator=g)
    pred = torch.where(torch.rand(300, generator=g) < 0.6, y, torch.randint(0, 5, (300,), generator=g))
    pred[pred == 4] = 3  # class 4 never predicted: F1 0 for it
    confusion = torch.zeros(5, 5, dtype=torch.float64)
    confusion.index_put_((y, pred), torch.ones(300, dtype=torch.float64), accumulate=True)
    assert macro_f1(confusion) == pytest.approx(f1_score(y, pred, average="macro", zero_division=0), abs=1e-12)
