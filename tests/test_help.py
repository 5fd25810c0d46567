"""Every command's and script's --help prints and exits 0 (argparse formats help lazily: a '%' in a help string,
such as a preset's '10% warm-up', raised ValueError only when a user asked for help)."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import pytest

from domainadapt.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p for folder in ("experiments", "benchmarks", "paper_figures") for p in (REPO / folder).glob("*.py")
                 if not p.name.startswith("_"))


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


@pytest.mark.parametrize("name", sorted(_subcommands()))
def test_every_subcommand_formats_its_help(name: str) -> None:
    text = _subcommands()[name].format_help()
    assert "usage:" in text and len(text) > 40


def test_top_level_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["train", "--help"])
    assert exit_info.value.code == 0
    assert "--preset" in capsys.readouterr().out


@pytest.mark.parametrize("script", SCRIPTS, ids=[f"{p.parent.name}/{p.name}" for p in SCRIPTS])
def test_every_script_help_exits_zero(script: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.syspath_prepend(str(script.parent))  # as `python experiments/x.py` puts its folder first
    spec = importlib.util.spec_from_file_location(f"_help_{script.parent.name}_{script.stem}", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(sys, "argv", [str(script), "--help"])
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"]) if _takes_argv(module.main) else module.main()
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out


def _takes_argv(main) -> bool:
    return main.__code__.co_argcount >= 1
