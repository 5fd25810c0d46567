"""The benchmark scripts run end to end at a tiny size on CPU and write the figures they promise (their speeds are
not asserted: a ratio is only meaningful at full size, on the machine it describes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def _run(script: str, *args: str, tmp_path: Path) -> dict:
    out = tmp_path / "result.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args, "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(out.read_text())


def test_dann_step_measures_every_variant_on_cpu(tmp_path):
    result = _run("dann_step.py", "--device", "cpu", "--backbone", "resnet18", "--image-size", "32", "--batch-size",
                  "4", "--steps", "2", "--warmup", "1", "--repeats", "1", tmp_path=tmp_path)
    assert set(result["images_per_s"]) == {"trainer_fp32", "trainer_bf16_cl", "bare_bf16_cl"}
    assert all(v > 0 for v in result["images_per_s"].values()) and result["trainer_over_bare"] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is visible")
def test_dann_step_refuses_cuda_without_a_device():
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "dann_step.py"), "--device", "cuda"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "no CUDA device is visible" in done.stderr


def test_image_pipeline_times_folder_bare_and_shards(tmp_path):
    result = _run("image_pipeline.py", "--images", "48", "--batch-size", "8", "--image-size", "32", "--batches", "2",
                  "--repeats", "1", "--workers", "1", tmp_path=tmp_path)
    assert {"ratio_ours_over_bare", "ratio_shards_over_bare"} <= set(result) and result["shards_images_per_s"] > 0
