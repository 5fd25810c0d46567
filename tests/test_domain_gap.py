"""Measuring named domains: feature spaces, the null diagonal, the CLI, the experiment and its figure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from domainadapt.cli import main
from domainadapt.inference import UnknownLayerError
from domainadapt.domain_gap import FeatureExtractor, FeatureSpec, measure_domains
from domainadapt.runs import run
from domainadapt.train import TrainConfig

from toy import write_toy_pair

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return write_toy_pair(tmp_path_factory.mktemp("toy"), n=200)


def test_shifted_domains_are_far_and_a_domain_is_near_itself(toy):
    src, tgt = toy
    far = measure_domains(src, tgt, image_size=16, n=100, n_permutations=200)
    near = measure_domains(src, src, image_size=16, n=100, n_permutations=200)
    assert far["n_source"] == near["n_source"] == 100
    assert far["metrics"]["mmd"]["p_value"] < 0.01
    assert near["metrics"]["mmd"]["p_value"] > 0.01
    assert far["metrics"]["a_distance"]["value"] > 1.9
    assert near["metrics"]["a_distance"]["value"] < 0.6
    assert far["metrics"]["fd"]["value"] > 10 * near["metrics"]["fd"]["value"]
    assert far["metrics"]["kid"]["value"] > near["metrics"]["kid"]["value"] + 5 * far["metrics"]["kid"]["std"]


def test_layer_features_of_a_trained_run(toy, tmp_path):
    src, tgt = toy
    run(TrainConfig(source=src, target=tgt, image_size=16, steps=3, batch_size=16, device="cpu", progress=False),
        tmp_path / "run")
    extractor = FeatureExtractor(FeatureSpec.parse(f"{tmp_path / 'run'}:backbone"))
    result = measure_domains(src, tgt, image_size=16, n=60, metrics=["fd"], extractor=extractor)
    assert result["features"] == f"{tmp_path / 'run'}:backbone"  # the extractor's feature space, not the default
    from domainadapt.data import load_domain
    from domainadapt.divergence import frechet_distance_from_features
    from domainadapt.domain_gap import sample_domain

    assert extractor(load_domain(src, image_size=16)).shape == (200, 48)
    # `value > 0` held for any two samples. The value is the FD of the run's backbone features of the two samples
    # measure_domains draws (seeds 0 and 1), not of their pixels (which give ~366) ...
    fd = result["metrics"]["fd"]["value"]
    by_hand = frechet_distance_from_features(
        *(extractor(sample_domain(load_domain(name, image_size=16), 60, seed)) for seed, name in enumerate((src, tgt))))
    assert fd == pytest.approx(by_hand, rel=1e-9)
    pixels = measure_domains(src, tgt, image_size=16, n=60, metrics=["fd"])["metrics"]["fd"]["value"]
    assert abs(pixels - fd) > 10 * fd
    # ... and the shifted (inverted) target is far from the source in that space, compared with two disjoint
    # samples of the source (measured 1.08 vs 0.024)
    near = measure_domains(src, src, image_size=16, n=60, metrics=["fd"], extractor=extractor)
    assert fd > 10 * near["metrics"]["fd"]["value"]
    with pytest.raises(UnknownLayerError, match="no layer 'nope'.*backbone.conv1"):
        FeatureExtractor(FeatureSpec.parse(f"{tmp_path / 'run'}:nope"))


def test_bad_feature_specs():
    with pytest.raises(ValueError, match="'pixels', 'inception' or 'CHECKPOINT:LAYER'"):
        FeatureSpec.parse("pix")
    with pytest.raises(FileNotFoundError, match="no run directory or checkpoint at /no/such"):
        FeatureSpec.parse("/no/such:backbone")


def test_inception_without_weights_names_the_file(tmp_path, monkeypatch):
    monkeypatch.delenv("DOMAINADAPT_FID_WEIGHTS", raising=False)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        FeatureExtractor(FeatureSpec.parse("inception"), fid_weights=str(tmp_path / "missing.pth"))


def test_cli_measure_prints_and_writes_json(toy, tmp_path, capsys):
    src, tgt = toy
    code = main(["measure", "--source", src, "--target", tgt, "--image-size", "16", "--n", "80",
                 "--permutations", "100", "--metrics", "mmd,fd", "--out", str(tmp_path / "gap.json")])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| mmd" in printed and "p = " in printed
    saved = json.loads((tmp_path / "gap.json").read_text())
    assert set(saved["metrics"]) == {"mmd", "fd"} and saved["n_source"] == 80


def test_cli_measure_unknown_metric(toy, capsys):
    assert main(["measure", "--source", toy[0], "--target", toy[1], "--image-size", "16", "--metrics", "mmd,wass"]) == 2
    assert "unknown metric(s) ['wass']" in capsys.readouterr().err


def test_domain_gap_experiment_and_figure(toy, tmp_path):
    src, tgt = toy
    out = tmp_path / "gap"
    cmd = [sys.executable, str(REPO / "experiments" / "domain_gap.py"), "--domains", src, tgt, "--n", "60",
           "--permutations", "50", "--out", str(out)]
    # file: domains are 16 px; the script measures at the default 32 px, so give it 32 px copies
    from domainadapt.data import load_domain
    from domainadapt.data.domain import resize_to_uint8

    for i, name in enumerate((src, tgt)):
        d = load_domain(name, image_size=16)
        d.images = resize_to_uint8(d.images, 32)
        d.save(tmp_path / f"d{i}.pt")
    cmd[cmd.index(src)] = f"file:{tmp_path / 'd0.pt'}"
    cmd[cmd.index(tgt)] = f"file:{tmp_path / 'd1.pt'}"
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    frame = pd.read_csv(out / "gap.csv")
    assert len(frame) == 3 * 4  # 3 pairs (with the diagonal) × 4 measures
    cross = frame[(frame.source != frame.target) & (frame.metric == "a_distance")]["value"].item()
    diag = frame[(frame.source == frame.target) & (frame.metric == "a_distance")]["value"]
    assert cross > diag.max()
    fig = subprocess.run([sys.executable, str(REPO / "paper_figures" / "domain_gap.py"), "--results",
                          str(out / "gap.csv"), "--out", str(tmp_path / "fig")], capture_output=True, text=True)
    assert fig.returncode == 0, fig.stderr[-2000:]
    assert (tmp_path / "fig" / "domain_gap.png").stat().st_size > 10_000
    assert (tmp_path / "fig" / "domain_gap.pdf").is_file()


def test_figure_without_results_is_a_clear_error(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "paper_figures" / "domain_gap.py"), "--results",
                           str(tmp_path / "none.csv")], capture_output=True, text=True)
    assert done.returncode == 2 and "run experiments/domain_gap.py first" in done.stderr


def test_tsne_figure_from_two_runs(toy, tmp_path):
    src, tgt = toy
    for method in ("source_only", "dann"):
        run(TrainConfig(method=method, source=src, target=tgt, image_size=16, steps=3, batch_size=16, device="cpu",
                        progress=False), tmp_path / method)
    done = subprocess.run([sys.executable, str(REPO / "paper_figures" / "tsne.py"), str(tmp_path / "source_only"),
                           str(tmp_path / "dann"), "--n", "30", "--out", str(tmp_path / "fig")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "fig" / "tsne.png").stat().st_size > 10_000
    missing = subprocess.run([sys.executable, str(REPO / "paper_figures" / "tsne.py"), str(tmp_path / "none")],
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "not finished run directories" in missing.stderr
