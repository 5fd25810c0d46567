"""WebDataset shards (data/shards.py): written from a folder they give the folder's examples, WebDataset's own reader
reads them, streams over them resume bitwise with workers, official parts survive, bad input is one line."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
import torch

from domainadapt.cli import main
from domainadapt.data import DomainError, load_domain, load_file_parts, load_shards, load_splits, write_shards
from domainadapt.data.streams import InfiniteBatchStream
from domainadapt.runs import run
from domainadapt.train import TrainConfig

from image_tree import write_image_folder

CLASSES = ("cat", "dog", "emu")


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Tiny models: one thread each (the machine is shared)."""


@pytest.fixture
def tree(tmp_path) -> Path:
    write_image_folder(tmp_path / "tree", CLASSES, per_class=5)
    return tmp_path / "tree"


def _shard(tree: Path, out: Path, **kwargs) -> Path:
    return write_shards(load_file_parts(f"lazy_folder:{tree}"), out, **kwargs)


def test_shards_of_a_folder_give_the_folder_examples(tree, tmp_path):
    out = _shard(tree, tmp_path / "shards", max_count=4)
    assert sorted(p.name for p in out.iterdir()) == ["index.json", "index.npy", *(f"shard-{k:06d}.tar" for k in range(4))]
    assert not (tmp_path / "shards.partial").exists()
    folder = load_domain(f"lazy_folder:{tree}", image_size=20)
    sharded = load_domain(f"shards:{out}", image_size=20)
    assert len(sharded) == len(folder) == 15 and sharded.classes == CLASSES and sharded.spans is not None
    assert torch.equal(sharded.labels, folder.labels)
    for a, b in ((folder, sharded), (folder.with_transform("da_train"), sharded.with_transform("da_train"))):
        for i in range(len(a)):
            assert torch.equal(a[(i, 11)][0], b[(i, 11)][0]) and a[i][1] == b[i][1]
    part = sharded.subset([3, 14, 0])
    assert torch.equal(part[1][0], folder[14][0]) and part.labels.tolist() == folder.labels[[3, 14, 0]].tolist()
    assert json.loads((out / "index.json").read_text())["count"] == 15


def test_webdataset_reads_our_shards_and_we_read_bare_webdataset_shards(tree, tmp_path):
    import webdataset

    out = _shard(tree, tmp_path / "shards", max_count=6)
    folder = load_domain(f"lazy_folder:{tree}", image_size=20)
    samples = list(webdataset.WebDataset([str(p) for p in sorted(out.glob("*.tar"))], shardshuffle=False))
    assert [int(s["cls"]) for s in samples] == folder.labels.tolist()
    assert [s["jpg"] for s in samples] == [Path(p).read_bytes() for p in folder.paths]  # the original bytes
    for name in ("index.json", "index.npy"):
        (out / name).unlink()
    bare = load_domain(f"shards:{out}", image_size=20)  # indexed from the tar members, classes by number
    assert bare.classes == ("0", "1", "2") and torch.equal(bare.labels, folder.labels)
    assert torch.equal(bare[7][0], folder[7][0])


def test_streams_over_shards_resume_bitwise_with_workers(tree, tmp_path):
    domain = load_domain(f"shards:{_shard(tree, tmp_path / 's', max_count=4)}", image_size=16).with_transform("da_train")
    plain = InfiniteBatchStream(domain, 4, seed=5)
    [next(plain) for _ in range(2)]
    state = plain.state_dict()
    expected = [next(plain) for _ in range(6)]  # crosses an epoch (15 items: 3 batches an epoch)
    restored = InfiniteBatchStream(domain, 4, seed=5, num_workers=2)
    restored.load_state_dict(state)
    for (xa, ya), (xb, yb) in zip(expected, [next(restored) for _ in range(6)]):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_a_run_trains_from_shards_like_from_the_folder(tree, tmp_path):
    out = _shard(tree, tmp_path / "shards", max_count=4)
    target = tmp_path / "target"
    write_image_folder(target, CLASSES, per_class=4, seed=9)
    common = dict(method="dann", target=f"lazy_folder:{target}", backbone="digits_cnn", image_size=16, steps=3,
                  batch_size=4, log_every=3, device="cpu", progress=False, deterministic=True, test_fraction=0.25)
    from_shards = run(TrainConfig(source=f"shards:{out}", **common), tmp_path / "a")
    from_folder = run(TrainConfig(source=f"lazy_folder:{tree}", **common), tmp_path / "b")
    assert from_shards["metrics"] == from_folder["metrics"] and "target_test/acc" in from_shards["metrics"]


def test_official_train_test_parts_are_kept(tree, tmp_path):
    whole = load_file_parts(f"lazy_folder:{tree}")["all"]
    train, test = whole.subset(list(range(0, 15, 2))), whole.subset(list(range(1, 15, 2)))
    out = write_shards({"train": train, "test": test}, tmp_path / "dn")
    parts = load_shards(out, image_size=16)
    assert list(parts) == ["train", "test"] and parts["test"].protocol == "official"
    splits = load_splits(f"shards:{out}", image_size=16)
    assert len(splits["train"]) == 8 and len(splits["test"]) == 7
    assert torch.equal(splits["test"][2][0], load_domain(f"lazy_folder:{tree}", image_size=16)[5][0])  # 1, 3, 5
    assert len(load_domain(f"shards:{out}", image_size=16)) == 15  # the domain: both parts


def test_bad_shards_are_one_line_errors(tree, tmp_path, capsys):
    out = _shard(tree, tmp_path / "shards", max_count=20)
    with pytest.raises(DomainError, match="already exists"):
        _shard(tree, out)
    with pytest.raises(DomainError, match=r"shard folder .*nowhere does not exist"):
        load_domain(f"shards:{tmp_path / 'nowhere'}")
    assert main(["shards", "mnist", str(tmp_path / "x")]) == 2
    assert "'mnist' is not a file-backed domain" in capsys.readouterr().err
    assert main(["shards", f"lazy_folder:{tree}", str(tmp_path / "cli")]) == 0
    assert "wrote" in capsys.readouterr().out and len(load_domain(f"shards:{tmp_path / 'cli'}")) == 15
    domain = load_domain(f"shards:{out}", image_size=16)
    offset = int(domain.spans[4, 0])
    with open(domain.paths[4], "r+b") as f:  # garble one image inside the shard
        f.seek(offset)
        f.write(b"\0" * 64)
    with pytest.raises(DomainError, match=rf"cannot read image .*shard-000000.tar \(bytes {offset}\.\.\d+\) \(item 4"):
        domain[4]
    (out / "shard-000000.tar").unlink()
    with pytest.raises(DomainError, match="1 indexed shards are missing"):
        load_domain(f"shards:{out}")
    broken = tmp_path / "broken"
    broken.mkdir()
    with tarfile.open(broken / "a.tar", "w") as tar:
        tar.add(str(tree / "cat" / "000.jpg"), arcname="0001.jpg")
    with pytest.raises(DomainError, match="lacks an image or a .cls label member"):
        load_domain(f"shards:{broken}")
