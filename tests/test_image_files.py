"""File-backed image domains: benchmark names on tiny trees, list == folder, exact resume with augmentation (DANN on
a ResNet-18), augmentation that does not depend on the workers, and bad input as one-line errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from domainadapt.data import DomainError, ImageFileDomain, build_transform, check_compatible, load_domain, load_splits
from domainadapt.data.benchmarks import DATA_ENV, OFFICE31
from domainadapt.data.streams import InfiniteBatchStream
from domainadapt.runs import run, run_name
from domainadapt.tasks import TaskError, get_task
from domainadapt.train import TrainConfig, load_checkpoint

from image_tree import corrupt, write_image_folder, write_list, write_office31
from killing import run_killed_after


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Tiny models: one thread each (the machine is shared)."""


@pytest.fixture(autouse=True)
def _restore_deterministic():
    deterministic = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(deterministic)


@pytest.fixture(scope="module")
def office31(tmp_path_factory) -> Path:
    return write_office31(tmp_path_factory.mktemp("data"), per_class=2)


def _batches(stream, k):
    return [next(stream) for _ in range(k)]


def _same(a, b) -> bool:
    return all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))


# ------------------------------------------------------------------------------------------- 1. benchmark names


def test_an_office31_tree_loads_by_name_whole_domain_protocol(office31, monkeypatch):
    for domain in ("amazon", "dslr", "webcam"):
        parts = load_splits(f"office31:{domain}", root=office31, image_size=24, check_counts=False)
        train, test = parts["train"], parts["test"]
        assert isinstance(train, ImageFileDomain) and train.protocol == test.protocol == "whole"
        assert train.classes == OFFICE31.classes and len(train.classes) == 31
        assert train.paths == test.paths and len(train) == 62
        assert train.class_counts().tolist() == [2] * 31
    x, y = train[0]
    assert x.shape == (3, 24, 24) and x.dtype == torch.float32 and 0.0 <= float(x.min()) <= float(x.max()) <= 1.0
    held_out = load_splits("office31:webcam", root=office31, image_size=24, check_counts=False, target_test="split",
                           test_fraction=0.5)
    assert held_out["test"].protocol == "split" and len(held_out["train"]) + len(held_out["test"]) == 62
    monkeypatch.setenv(DATA_ENV, str(office31))  # the root from the environment
    assert len(load_domain("office31:dslr", image_size=24, check_counts=False)) == 62


def test_office31_counts_are_checked_and_a_missing_root_names_the_layout(office31, tmp_path, monkeypatch):
    with pytest.raises(DomainError, match=r"^office31:amazon has 62 images, expected 2817 \(incomplete download\?\)"):
        load_domain("office31:amazon", root=office31)
    where = re.escape(str(tmp_path))
    with pytest.raises(DomainError, match=rf"^office31 not found under {where}: expected {where}/office31/amazon/"
                       r"images/<class>/<image> \(or .*office31/image_list/amazon.txt\); download from https://"):
        load_domain("office31:amazon", root=tmp_path)
    monkeypatch.delenv(DATA_ENV, raising=False)
    with pytest.raises(DomainError, match=rf"no data_root given and \${DATA_ENV} is not set"):
        load_domain("officehome:Art")
    with pytest.raises(DomainError, match="office31 has no domain 'amzon'; its domains: amazon, dslr, webcam"):
        load_domain("office31:amzon", root=office31)


def test_a_benchmark_image_list_is_preferred_and_gives_the_folder_examples(office31, tmp_path):
    root = tmp_path / "copy"
    entries = write_image_folder(root / "office31" / "dslr" / "images", OFFICE31.classes, per_class=1)
    write_list(root / "office31" / "image_list" / "dslr.txt", [(f"dslr/images/{r}", y) for r, y in entries[::-1]])
    listed = load_domain("office31:dslr", root=root, image_size=24, check_counts=False)
    assert [Path(p).name for p in listed.paths][:2] == ["000.jpg", "000.jpg"] and listed.labels[0] == 30


# ------------------------------------------------------------------------------------------- 2. list == folder


def test_list_and_folder_forms_give_the_same_examples(tmp_path):
    classes = ("cat", "dog", "emu")
    entries = write_image_folder(tmp_path / "tree", classes, per_class=3)
    list_file = write_list(tmp_path / "tree" / "images.txt", entries)
    folder = load_domain(f"lazy_folder:{tmp_path / 'tree'}", image_size=28)
    listed = load_domain(f"list:{list_file}", image_size=28)
    assert folder.paths == listed.paths and folder.classes == listed.classes == classes
    assert torch.equal(folder.labels, listed.labels)
    for a, b in ((folder, listed), (folder.with_transform("da_train"), listed.with_transform("da_train"))):
        for i in range(len(a)):
            assert torch.equal(a[i][0], b[i][0]) and a[i][1] == b[i][1]
            assert torch.equal(a[(i, 7)][0], b[(i, 7)][0])
    check_compatible(folder, listed)


def test_pipelines_are_float_in_0_1_and_augmentation_is_a_function_of_the_draw_seed(tmp_path):
    write_image_folder(tmp_path, ("a", "b"), per_class=2)
    domain = load_domain(f"lazy_folder:{tmp_path}", image_size=24).with_transform("da_train")
    before = torch.get_rng_state()
    x1, x2, x3 = domain[(1, 5)][0], domain[(1, 5)][0], domain[(1, 6)][0]
    assert torch.equal(torch.get_rng_state(), before)  # the caller's generator is untouched
    assert torch.equal(x1, x2) and not torch.equal(x1, x3)
    for name in ("da_train", "da_eval", "resize"):
        x = domain.with_transform(name)[0][0]
        assert x.shape == (3, 24, 24) and x.dtype == torch.float32 and 0 <= float(x.min()) <= float(x.max()) <= 1
    with pytest.raises(DomainError, match="unknown transform 'flip'; choose one of da_train, da_eval, resize, none"):
        build_transform("flip", 24)


# ------------------------------------------------------------------------------------------- 3. exact resume


def _dann_config(root: Path, **overrides) -> TrainConfig:
    base = dict(method="dann", source="office31:amazon", target="office31:webcam", backbone="resnet18",
                backbone_kwargs={"weights": None}, image_size=32, steps=20, batch_size=8, num_workers=2,
                task_kwargs={"check_counts": False}, checkpoint_every=5, log_every=5, device="cpu", progress=False,
                deterministic=True, data_root=str(root), lr=0.005)
    base.update(overrides)
    return TrainConfig(**base)


def test_a_killed_dann_run_on_office31_resumes_bitwise_equal(office31, tmp_path, monkeypatch):
    config = _dann_config(office31)
    run_killed_after(config, tmp_path / "killed", 12, monkeypatch)  # the last checkpoint is step 10
    assert load_checkpoint(tmp_path / "killed" / "checkpoints" / "last.pt")["step"] == 10
    resumed = run(config, tmp_path / "killed")
    reference = run(config, tmp_path / "reference")
    a = load_checkpoint(tmp_path / "killed" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "reference" / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == 20 and a["streams"] == b["streams"]
    for k in b["modules"]:
        assert torch.equal(a["modules"][k], b["modules"][k]), k
    assert resumed["metrics"] == reference["metrics"] and "target_test/acc" in reference["metrics"]


def test_default_task_options_leave_digits_run_names_unchanged():
    config = TrainConfig(source="mnist", target="mnist_m")
    task = get_task("image_classification")
    assert config.task_kwargs == {} and task.options(config) == task.Options()
    assert run_name(config) == "source_only__mnist__mnist_m__s0__44136fa355b3"  # the name before file-backed domains


# ------------------------------------------------------------------------------------------- 4. augmentation streams


def test_augmented_batches_are_the_same_with_0_and_2_workers_and_after_a_restore(office31):
    domain = load_domain("office31:amazon", root=office31, image_size=24, check_counts=False).with_transform("da_train")
    plain = InfiniteBatchStream(domain, 8, seed=3)
    ahead = InfiniteBatchStream(domain, 8, seed=3, num_workers=2)
    first = _batches(plain, 3)
    assert _same(first, _batches(ahead, 3))
    state = plain.state_dict()
    expected = _batches(plain, 9)  # crosses the epoch boundary (62 items, 7 batches an epoch)
    assert _same(expected, _batches(ahead, 9))
    for workers in (0, 2):
        restored = InfiniteBatchStream(domain, 8, seed=3, num_workers=workers)
        restored.load_state_dict(state)
        assert _same(expected, _batches(restored, 9))
    other_seed = next(InfiniteBatchStream(domain, 8, seed=4))
    assert not torch.equal(other_seed[0], first[0][0])


def test_class_balanced_streams_draw_a_seeded_resumable_weighted_order(tmp_path):
    entries = write_image_folder(tmp_path / "few", ("a",), per_class=2) + [
        (r, 1) for r, _ in write_image_folder(tmp_path / "many", ("b",), per_class=10)]
    domain = ImageFileDomain("skewed", [str(tmp_path / ("few" if y == 0 else "many") / r) for r, y in entries],
                             torch.tensor([y for _, y in entries]), ("a", "b"), image_size=24).balanced()
    stream = InfiniteBatchStream(domain, 6, seed=0)
    labels = torch.cat([next(stream)[1] for _ in range(40)])
    assert 0.4 < labels.float().mean() < 0.6  # about half from the class of 2 images (plain sampling: 10/12)
    again = InfiniteBatchStream(domain, 6, seed=0)
    again.load_state_dict(InfiniteBatchStream(domain, 6, seed=0).state_dict())
    assert torch.equal(torch.cat([next(again)[1] for _ in range(40)]), labels)


# ------------------------------------------------------------------------------------------- 5. bad input


def test_bad_lists_are_one_line_errors_naming_the_file(tmp_path):
    entries = write_image_folder(tmp_path, ("a", "b"), per_class=2)
    missing = write_list(tmp_path / "missing.txt", entries + [("a/nope.jpg", 0), ("b/gone.jpg", 1)])
    with pytest.raises(DomainError, match=rf"^{re.escape(str(missing))}: 2 of 6 listed images do not exist; "
                       r"the first is .*a/nope.jpg$"):
        load_domain(f"list:{missing}")
    (tmp_path / "bad.txt").write_text("a/000.jpg 0\n\na/001.jpg\n")
    with pytest.raises(DomainError, match=r"bad.txt:3: expected 'relative/path label', got 'a/001.jpg'$"):
        load_domain(f"list:{tmp_path / 'bad.txt'}")
    write_image_folder(tmp_path / "o31" / "office31" / "dslr" / "images", OFFICE31.classes[:1], per_class=1)
    write_list(tmp_path / "o31" / "office31" / "image_list" / "dslr.txt", [("dslr/images/back_pack/000.jpg", 31)])
    with pytest.raises(DomainError, match=r"dslr.txt:1: label 31 out of range \[0, 31\)$"):
        load_domain("office31:dslr", root=tmp_path / "o31", check_counts=False)


def test_a_corrupt_image_met_mid_training_names_the_file(tmp_path):
    entries = write_image_folder(tmp_path / "src", ("a", "b"), per_class=8)
    write_image_folder(tmp_path / "tgt", ("a", "b"), per_class=8, seed=1)
    bad = corrupt(tmp_path / "src" / entries[5][0])
    for workers in (0, 2):
        config = TrainConfig(source=f"lazy_folder:{tmp_path / 'src'}", target=f"lazy_folder:{tmp_path / 'tgt'}",
                             image_size=16, steps=30, batch_size=4, device="cpu", progress=False, num_workers=workers)
        with pytest.raises(DomainError, match=rf"^cannot read image {re.escape(str(bad))} \(item \d+ of domain '.*src/train'\): "
                           r"UnidentifiedImageError: [^\n]*$"):
            run(config, tmp_path / f"run{workers}")


def test_class_sets_that_differ_and_options_that_cannot_apply_fail_before_training(tmp_path):
    write_image_folder(tmp_path / "ab", ("a", "b"), per_class=4)
    write_image_folder(tmp_path / "ac", ("a", "c"), per_class=4)
    config = TrainConfig(source=f"lazy_folder:{tmp_path / 'ab'}", target=f"lazy_folder:{tmp_path / 'ac'}",
                         image_size=16, steps=1, batch_size=2, device="cpu", progress=False)
    with pytest.raises(DomainError, match=r"different classes: \('a', 'b'\) vs \('a', 'c'\)$"):
        run(config, tmp_path / "run")
    digits = TrainConfig(source="optdigits", target="optdigits", task_kwargs={"class_balanced": True})
    with pytest.raises(TaskError, match="class_balanced is implemented for file-backed source domains only"):
        run(digits, tmp_path / "digits")
    with pytest.raises(TaskError, match="train_transform='da_train' applies to file-backed domains"):
        run(TrainConfig(source="optdigits", target="optdigits", task_kwargs={"train_transform": "da_train"}),
            tmp_path / "digits")


def test_domain_gap_measures_file_backed_domains(office31):
    # the divergences read pixels of a lazy domain by decoding its (sampled) items; before, `.images` was required
    from domainadapt.domain_gap import measure_domains

    result = measure_domains(f"lazy_folder:{office31}/office31/amazon/images",
                             f"lazy_folder:{office31}/office31/webcam/images", metrics=["mmd"], n=40,
                             n_permutations=20, image_size=16)
    assert result["n_source"] == result["n_target"] == 40
    assert result["metrics"]["mmd"]["value"] == result["metrics"]["mmd"]["value"]  # a number, not NaN
