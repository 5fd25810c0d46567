"""experiments/office.py: the runs it plans, its refusal without data, and a tiny end-to-end table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from image_tree import write_office31

REPO = Path(__file__).resolve().parents[1]
SCRIPT = str(REPO / "experiments" / "office.py")


def _run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DOMAINADAPT_DATA": ""}
    return subprocess.run([sys.executable, SCRIPT, *args], env=env, capture_output=True, text=True, timeout=600,
                          cwd=tmp_path)


def test_dry_run_plans_every_office31_task_with_the_uda_recipe(tmp_path):
    done = _run(["--benchmark", "office31", "--dry-run", "--seeds", "0", "1"], tmp_path)
    assert done.returncode == 0, done.stderr
    names = done.stdout.splitlines()[:-1]
    assert len(names) == 6 * 4 * 2  # 6 transfer tasks × 4 methods × 2 seeds
    assert any(n.startswith("dann__office31-amazon__office31-webcam__s1__") for n in names)
    assert done.stdout.splitlines()[-1] == "48 runs of 10,000 steps"


def test_it_refuses_to_start_without_the_data_and_names_the_path(tmp_path):
    done = _run(["--benchmark", "office31", "--data-root", str(tmp_path / "nowhere")], tmp_path)
    assert done.returncode == 2
    assert "office31" in done.stderr and "nowhere" in done.stderr and "Traceback" not in done.stderr
    bad = _run(["--benchmark", "office31", "--domains", "amazon", "kitchen", "--dry-run"], tmp_path)
    assert bad.returncode == 2 and "kitchen" in bad.stderr


def test_a_tiny_office31_table_has_our_rows_the_average_and_the_published_rows(tmp_path):
    root = write_office31(tmp_path / "data", per_class=1, domains=("amazon", "webcam"))
    out = tmp_path / "out"
    done = _run(["--benchmark", "office31", "--data-root", str(root), "--domains", "amazon", "webcam",
                 "--methods", "source_only", "dann", "--seeds", "0", "--steps", "2", "--backbone", "resnet18",
                 "--weights", "none", "--image-size", "32", "--batch-size", "8", "--workers", "0", "--device", "cpu", "--no-check-counts",
                 "--out", str(out)], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    table = (out / "table.md").read_text()
    lines = table.splitlines()
    header = next(line for line in lines if "A→W" in line)
    assert "W→A" in header and "Avg" in header and "D→W" not in header  # only the tasks run, then the average
    assert any(line.startswith("| dann ") and "(1)" in line for line in lines)
    published = next(line for line in lines if line.startswith("| DANN (CDAN T1)"))
    assert "82.0" in published and "67.4" in published  # A→W and W→A of Long et al. 2018, Table 1
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 4 and runs["target_test/acc"].between(0, 1).all()
    assert set(runs["steps_done"]) == {2}


def test_the_recipe_gives_the_backbone_lr_x_0_1_and_the_bottleneck_and_head_lr_x_1():
    import importlib.util

    import torch

    from domainadapt.models import build_model
    from domainadapt.train.param_groups import param_lr_multipliers

    spec = importlib.util.spec_from_file_location("office_script", SCRIPT)
    office = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(office)
    with torch.device("meta"):
        model = build_model("resnet18", 31, 32, {"bottleneck": 256})
    mults = param_lr_multipliers(model, office.RECIPE["lr_mults"])
    assert {mults[n] for n in mults if n.startswith("backbone.extractor.")} == {0.1}
    assert {mults[n] for n in mults if not n.startswith("backbone.extractor.")} == {1.0}
    assert any(n.startswith("backbone.bottleneck.") for n in mults)


def test_the_published_rows_average_to_the_papers_averages():
    import importlib.util

    spec = importlib.util.spec_from_file_location("office_script_rows", SCRIPT)
    office = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(office)
    import pytest

    mean = lambda row: sum(row.values()) / len(row)  # noqa: E731
    o31, oh = office.PUBLISHED["office31"], office.PUBLISHED["officehome"]
    # CDAN Table 1 averages (ResNet-50, DAN, DANN, CDAN+E), printed to one decimal
    assert [mean(o31[k]) for k in o31] == pytest.approx([76.1, 80.4, 82.2, 87.7], abs=0.051)
    assert mean(oh["CDAN+E (CDAN T2)"]) == pytest.approx(65.8, abs=0.051) and all(len(r) == 12 for r in oh.values())
