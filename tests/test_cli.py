"""The `msae` entry point: every stage is listed and every subcommand has --help."""

from __future__ import annotations

import subprocess
import sys

import pytest

from msae.cli import build_parser, command_tree, main
from msae.commands import Command, Group

EXPECTED_STAGES = {
    "world",
    "embed",
    "gather",
    "train",
    "evaluate",
    "stability",
    "vocab",
    "concepts",
    "probe",
    "report",
    "sync",
}


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
    def walk(node):
        assert isinstance(node.order, int) and node.help, node.name
        if isinstance(node, Group):
            for child in node.commands:
                walk(child)
        else:
            assert isinstance(node, Command) and callable(node.run) and node.spec().models, node.name

    for node in command_tree():
        walk(node)


def test_help_does_not_import_torch():
    code = "import sys; from msae.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False", "command modules must import torch lazily, inside run()"
