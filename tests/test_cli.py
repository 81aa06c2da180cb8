"""The `msae` entry point: every stage is listed and every subcommand has --help."""

from __future__ import annotations

import subprocess
import sys

import pytest

from msae.cli import _command_modules, build_parser, main

EXPECTED_STAGES = {"world", "embed", "gather", "train", "evaluate", "stability", "vocab", "concepts", "probe", "report", "sync"}


def _subcommands() -> dict:
    parser = build_parser()
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return action.choices


def test_help_lists_every_pipeline_stage():
    out = subprocess.run([sys.executable, "-m", "msae", "--help"], capture_output=True, text=True, check=True).stdout
    for stage in EXPECTED_STAGES:
        assert stage in out, f"`msae --help` does not list {stage}"


@pytest.mark.parametrize("name", sorted(EXPECTED_STAGES))
def test_every_subcommand_has_help(name, capsys):
    assert name in _subcommands(), f"missing stage {name}"
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0
    assert "usage: msae" in capsys.readouterr().out


def test_command_modules_follow_the_contract():
    for module in _command_modules():
        assert isinstance(module.ORDER, int) and module.HELP and callable(module.register), module.__name__


def test_help_does_not_import_torch():
    code = "import sys; from msae.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False", "command modules must import torch lazily, inside run()"
