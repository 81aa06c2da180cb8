"""The `msae` command line: one subcommand per pipeline stage.

Each stage lives in `msae/commands/<stage>.py` and exposes `ORDER: int`, `HELP: str` and
`register(subparsers) -> None`; `register` adds a subparser and sets `func(args) -> int | None`.
Command modules import torch and friends inside `func`, so `msae --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

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
    sub = parser.add_subparsers(dest="command", metavar="STAGE", required=True)
    for module in _command_modules():
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
