"""Bad input fails before training, with an error that names the problem (never a raw traceback)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from domainadapt.cli import main
from domainadapt.data import DomainError
from domainadapt.methods import MethodError
from domainadapt.runs import RunDirError, run
from domainadapt.train import CheckpointError, ConfigError, TrainConfig

from toy import toy_domain, write_toy_pair

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return write_toy_pair(tmp_path_factory.mktemp("toy"))


def _cfg(toy, **kw) -> TrainConfig:
    base = dict(source=toy[0], target=toy[1], image_size=16, steps=5, batch_size=16, device="cpu", progress=False)
    base.update(kw)
    return TrainConfig(**base)


def test_unknown_method_is_named(toy, tmp_path):
    with pytest.raises(MethodError, match="unknown method 'danm'.*source_only"):
        run(_cfg(toy, method="danm"), tmp_path / "r")
    assert not (tmp_path / "r").exists()  # nothing written


def test_unknown_method_option_is_named(toy, tmp_path):
    with pytest.raises(MethodError, match=r"does not take option\(s\) \['weight'\]"):
        run(_cfg(toy, method_kwargs={"weight": 1.0}), tmp_path / "r")


def test_unknown_domain_is_named(toy, tmp_path):
    with pytest.raises(DomainError, match="unknown target domain 'mnistm'.*mnist_m"):
        run(_cfg(toy, target="mnistm"), tmp_path / "r")


def test_domains_with_different_label_sets(toy, tmp_path):
    other = tmp_path / "letters.pt"
    toy_domain(classes=tuple("abcdefghij"), name="letters").save(other)
    with pytest.raises(DomainError, match="class"):
        run(_cfg(toy, target=f"file:{other}"), tmp_path / "r")


def test_empty_domain(tmp_path, toy):
    path = tmp_path / "empty.pt"
    torch.save({"name": "empty", "images": torch.zeros(0, 3, 16, 16, dtype=torch.uint8),
                "labels": torch.zeros(0, dtype=torch.int64), "classes": list("0123456789")}, path)
    with pytest.raises(DomainError, match="empty"):
        run(_cfg(toy, target=f"file:{path}"), tmp_path / "r")


def test_wrong_image_shape(tmp_path, toy):
    path = tmp_path / "grey.pt"
    torch.save({"name": "grey", "images": torch.zeros(20, 1, 16, 16, dtype=torch.uint8),
                "labels": torch.arange(20) % 10, "classes": list("0123456789")}, path)
    with pytest.raises(DomainError, match=r"N×3×S×S.*\(20, 1, 16, 16\)"):
        run(_cfg(toy, target=f"file:{path}"), tmp_path / "r")


def test_image_size_other_than_configured(toy, tmp_path):
    with pytest.raises(DomainError, match="16"):
        run(_cfg(toy, image_size=32), tmp_path / "r")


def test_data_root_without_files(tmp_path):
    with pytest.raises(DomainError, match=str(tmp_path)):
        run(TrainConfig(source="mnist", target="usps", data_root=str(tmp_path), steps=1, device="cpu"), tmp_path / "r")


def test_batch_larger_than_domain(toy, tmp_path):
    from domainadapt.data.streams import StreamError

    with pytest.raises(StreamError, match="batch size 512 exceeds"):
        run(_cfg(toy, batch_size=512), tmp_path / "r")


@pytest.mark.parametrize("field,value,match", [("steps", 0, "steps"), ("amp", "fp8", "amp"), ("lr", -1.0, "lr"),
                                               ("batch_size", 30, "grad_accum")])
def test_bad_config_values(toy, tmp_path, field, value, match):
    kw = {field: value}
    if field == "batch_size":
        kw["grad_accum"] = 4
    with pytest.raises(ConfigError, match=match):
        run(_cfg(toy, **kw), tmp_path / "r")


def test_checkpoint_of_another_run_is_refused(toy, tmp_path):
    run(_cfg(toy, steps=3), tmp_path / "a")
    (tmp_path / "b" / "checkpoints").mkdir(parents=True)
    (tmp_path / "b" / "checkpoints" / "last.pt").write_bytes((tmp_path / "a" / "checkpoints" / "last.pt").read_bytes())
    with pytest.raises(CheckpointError, match="belongs to another run"):
        run(_cfg(toy, steps=3, seed=1), tmp_path / "b")


def test_damaged_checkpoint_is_refused(toy, tmp_path):
    run(_cfg(toy, steps=3), tmp_path / "a")
    (tmp_path / "a" / "result.json").unlink()
    ckpt = tmp_path / "a" / "checkpoints" / "last.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="damaged"):
        run(_cfg(toy, steps=3), tmp_path / "a")


def test_run_dir_of_another_config_is_refused(toy, tmp_path):
    run(_cfg(toy, steps=3), tmp_path / "a")
    with pytest.raises(RunDirError, match="holds another run"):
        run(_cfg(toy, steps=4), tmp_path / "a")


def test_cli_prints_one_error_line_and_exits_2(toy, tmp_path, capsys):
    code = main(["train", "--method", "nope", "--source", toy[0], "--target", toy[1], "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: unknown method 'nope'") and "Traceback" not in err


def test_cli_subprocess_damaged_domain_file(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torch file")
    done = subprocess.run([sys.executable, "-m", "domainadapt", "train", "--source", f"file:{bad}", "--target", "mnist",
                           "--steps", "1", "--device", "cpu", "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 2
    assert "damaged domain file" in done.stderr and "Traceback" not in done.stderr
