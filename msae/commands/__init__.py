"""Subcommands of `msae`, one module per stage (discovered by msae.cli).

A module defines `COMMANDS`: a tuple of `Command` (one config spec and the function that runs it)
and `Group` (a command with sub-actions, e.g. `msae probe similarity|bias`). The parser of each
command is built from its config; `run` receives the validated config object and imports heavy
modules (torch) itself, so `msae --help` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from msae.config.base import ConfigSpec, StageConfig


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    spec: Callable[[], ConfigSpec]
    run: Callable[[Any], int | None]
    description: str = ""
    order: int = 100


@dataclass(frozen=True)
class Group:
    name: str
    help: str
    commands: tuple[Command | Group, ...]
    description: str = ""
    order: int = 100


def single(model: type[StageConfig]) -> Callable[[], ConfigSpec]:
    """The spec factory of a one-model config."""
    return lambda: ConfigSpec.of(model)
