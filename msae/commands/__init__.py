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


def action(name: str, model: type[StageConfig], help: str) -> Callable[[Callable[[Any], int | None]], Command]:
    """Declare the decorated function as the `run` of the command `name` (an action of a `Group`)
    whose options are those of the one config `model`."""
    return lambda run: Command(name, help=help, spec=single(model), run=run)


def single_action(group: str, order: int, command: Command) -> Group:
    """A group with one action (e.g. `msae pipeline write`), described by the action's help."""
    return Group(group, help=command.help, order=order, commands=(command,))
