"""The import contracts (pyproject.toml, [tool.importlinter]) hold, and they are live: an upward import breaks them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter not installed (pip install '.[dev]')")


def lint(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=root, env=env, capture_output=True, text=True,
                          timeout=300)


def copy_package(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(REPO / "domainadapt", root / "domainadapt", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


def test_the_layer_contract_holds_on_the_package():
    done = lint(REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "1 kept, 0 broken" in done.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    root = copy_package(tmp_path)
    splits = root / "domainadapt" / "data" / "splits.py"
    splits.write_text(splits.read_text() + "\nfrom domainadapt import runs  # noqa: E402,F401  (data -> runs: upward)\n")
    done = lint(root)
    assert done.returncode != 0
    assert "BROKEN" in done.stdout and "domainadapt.data.splits" in done.stdout and "domainadapt.runs" in done.stdout


def test_a_module_outside_the_layers_breaks_the_contract(tmp_path):
    root = copy_package(tmp_path)
    (root / "domainadapt" / "stray.py").write_text('"""A top-level module nobody placed in a layer."""\n')
    done = lint(root)
    assert done.returncode != 0 and "domainadapt.stray" in done.stdout
