"""Atomic file writes: a final output either exists complete or not at all.

Every stage writes through these helpers so an interrupted run never leaves a half-written file
that a later stage (or Snakemake/DVC) would mistake for a result.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from msae.errors import MsaeError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` only if the block succeeds."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates 0600 files; give the result the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write a text file atomically and return its path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomic(path: str | os.PathLike[str], obj: Any, indent: int = 2) -> Path:
    """Write JSON atomically (sorted keys, so diffs and `dvc metrics diff` stay stable)."""
    return write_text_atomic(path, json.dumps(obj, indent=indent, sort_keys=True, allow_nan=False) + "\n")


def file_sha256(path: str | os.PathLike[str], chunk_bytes: int = 1 << 20) -> str:
    """Content hash of a file, recorded in checkpoints so a run names exactly the data it saw."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_json_object(path: str | os.PathLike[str], missing: str = "") -> dict[str, Any]:
    """A JSON object file; MsaeError naming the file when it is absent (`missing` says what to do),
    unreadable, not UTF-8, malformed or not an object."""
    path = Path(path)
    if not path.is_file():
        raise MsaeError(f"{path}: not found{f'; {missing}' if missing else ''}")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MsaeError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise MsaeError(f"{path}: expected a JSON object, found {type(value).__name__}")
    return value


def read_frame(path: str | os.PathLike[str], required: tuple[str, ...] = (), missing: str = "") -> Any:
    """A CSV or Parquet table with the `required` columns; MsaeError naming the file and column
    (`missing` says what to do when the file is absent or unreadable)."""
    import pandas as pd

    path = Path(path)
    hint = f"; {missing}" if missing else ""
    try:
        frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise MsaeError(f"{path}: cannot read ({exc}){hint}") from exc
    absent = [c for c in required if c not in frame.columns]
    if absent:
        raise MsaeError(
            f"{path}: missing column(s) {', '.join(absent)} (has {', '.join(map(str, frame.columns))}){hint}"
        )
    return frame
