"""The `msae` command line: one subcommand per pipeline stage.

Each stage lives in `msae/commands/<stage>.py` as `COMMANDS` (see msae.commands); the options of
a command are the fields of its config (msae.config), so help, choices, ranges and defaults are
declared once. Command modules import torch inside `run`, so `msae --help` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import pkgutil
import sys
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from msae import __version__
from msae.commands import Command, Group
from msae.config.parser import add_options, config_from_args
from msae.errors import MsaeError


def command_tree() -> list[Command | Group]:
    """Every top-level command, in pipeline order."""
    import msae.commands as pkg

    found: list[Command | Group] = []
    for info in pkgutil.iter_modules(pkg.__path__):
        found.extend(importlib.import_module(f"{pkg.__name__}.{info.name}").COMMANDS)
    return sorted(found, key=lambda c: (c.order, c.name))


def _add(subparsers: Any, node: Command | Group, path: tuple[str, ...]) -> None:
    parser = subparsers.add_parser(node.name, help=node.help, description=node.description or node.help)
    here = (*path, node.name)
    if isinstance(node, Group):
        sub = parser.add_subparsers(dest=f"_action_{len(here)}", metavar="ACTION", required=True)
        for child in node.commands:
            _add(sub, child, here)
        return
    add_options(parser, node.spec())
    parser.set_defaults(_command=node, _command_name=" ".join(here))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="msae",
        description="Sparse autoencoders that interpret CLIP. Each subcommand is one pipeline stage.",
    )
    parser.add_argument("--version", action="version", version=f"msae {__version__}")
    parser.add_argument(
        "--log",
        dest="_log",
        type=Path,
        default=None,
        metavar="FILE",
        help="also write the stage's messages and result to FILE (progress bars stay on the terminal), "
        "e.g. one log per pipeline job",
    )
    sub = parser.add_subparsers(dest="_stage", metavar="STAGE", required=True)
    for node in command_tree():
        _add(sub, node, ())
    return parser


class _Tee:
    """A text stream that also copies what is written to a log file: pipelines keep one log per job
    while the person running them still watches progress on the terminal. Progress bars (tqdm)
    redraw one line with carriage returns and cursor moves: those writes, and the bare newlines
    that close a bar, go to the terminal only, so the log holds messages, not thousands of redraws."""

    def __init__(self, stream: TextIO, log: TextIO) -> None:
        self._stream, self._log = stream, log
        self._drawing = False  # the last write was part of a progress bar

    def write(self, text: str) -> int:
        if "\r" in text or "\x1b[" in text:
            self._drawing = True
        elif not (self._drawing and not text.strip()):
            self._drawing = False
            self._log.write(text)
        return self._stream.write(text)

    def flush(self) -> None:
        self._log.flush()
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextlib.contextmanager
def _copied_to_log(log_path: Path | None) -> Iterator[None]:
    """Copy stderr (messages) and stdout (each command's one-line result) to `log_path`; a crash's
    traceback is written to the log too, so the log of a failed job says why it failed."""
    if log_path is None:
        yield
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    out, err = sys.stdout, sys.stderr
    with open(log_path, "w", encoding="utf-8", buffering=1) as log:
        sys.stdout, sys.stderr = _Tee(out, log), _Tee(err, log)  # type: ignore[assignment]
        try:
            yield
        except Exception:
            log.write(traceback.format_exc())
            raise
        finally:
            sys.stdout, sys.stderr = out, err


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    with _copied_to_log(args._log):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from msae.config.base import describe_validation

    command: Command = args._command
    try:
        config = config_from_args(args, command.spec())
        code = command.run(config)
    except ValidationError as exc:  # a config built inside the stage from bad values
        print(f"msae {args._command_name}: error: {describe_validation(exc)}", file=sys.stderr)
        return 2
    except MsaeError as exc:
        print(f"msae {args._command_name}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"msae {args._command_name}: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
