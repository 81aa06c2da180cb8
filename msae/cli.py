"""The `msae` command line: one subcommand per pipeline stage.

Each stage lives in `msae/commands/<stage>.py` and exposes `ORDER: int`, `HELP: str` and
`register(subparsers) -> None`; `register` adds a subparser and sets `func(args) -> int | None`.
Command modules import torch and friends inside `func`, so `msae --help` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import pkgutil
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from msae import __version__
from msae.errors import MsaeError


def _command_modules() -> list:
    import msae.commands as pkg

    modules = [importlib.import_module(f"{pkg.__name__}.{m.name}") for m in pkgutil.iter_modules(pkg.__path__)]
    return sorted(modules, key=lambda m: (getattr(m, "ORDER", 100), m.__name__))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="msae",
        description="Sparse autoencoders that interpret CLIP. Each subcommand is one pipeline stage.",
    )
    parser.add_argument("--version", action="version", version=f"msae {__version__}")
    parser.add_argument("--log", type=Path, default=None, metavar="FILE",
                        help="also write the stage's messages (stderr) to FILE, e.g. one log per pipeline job")
    sub = parser.add_subparsers(dest="command", metavar="STAGE", required=True)
    for module in _command_modules():
        module.register(sub)
    return parser


class _Tee:
    """A text stream that also copies everything to a log file: pipelines keep one log per job
    while the person running them still watches progress on the terminal."""

    def __init__(self, stream, log) -> None:
        self._stream, self._log = stream, log

    def write(self, text: str) -> int:
        self._log.write(text)
        return self._stream.write(text)

    def flush(self) -> None:
        self._log.flush()
        self._stream.flush()

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


@contextlib.contextmanager
def _stderr_copied_to(log_path: Path | None) -> Iterator[None]:
    if log_path is None:
        yield
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    original = sys.stderr
    with open(log_path, "w", encoding="utf-8") as log:
        sys.stderr = _Tee(original, log)
        try:
            yield
        finally:
            sys.stderr = original


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    with _stderr_copied_to(args.log):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        code = args.func(args)
    except MsaeError as exc:
        print(f"msae {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"msae {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
