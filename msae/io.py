"""Atomic file writes: a final output either exists complete or not at all.

Every stage writes through these helpers so an interrupted run never leaves a half-written file
that a later stage (or Snakemake/DVC) would mistake for a result.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from msae.errors import MsaeError

# Failures of the place written to (not of the data): reported as "cannot write PATH (reason)".
WRITE_ERRNOS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large for the file system",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOTDIR: "a parent of the path is a file, not a folder",
    errno.EISDIR: "the path is a folder",
    errno.ENAMETOOLONG: "file name too long",
}
NO_SPACE_TEXT = ("no space left on device", "os error 28", "errno 28")
LOW_SPACE_BYTES = 1 << 16  # a failed write on a file system with less than this free ran out of space


def _write_reason(exc: BaseException, places: tuple[Path, ...]) -> str | None:
    """Why writing failed when it is the place's fault (disk full, permissions, ...), else None.

    torch.save reports a full disk as an opaque RuntimeError: a failed write on a file system with
    (almost) no free space left is taken to be one."""
    if isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS:
        if exc.filename is None or Path(exc.filename) in places:
            return WRITE_ERRNOS[exc.errno]
    text = str(exc).lower()
    if any(marker in text for marker in NO_SPACE_TEXT):
        return WRITE_ERRNOS[errno.ENOSPC]
    with contextlib.suppress(OSError):
        if shutil.disk_usage(places[-1].parent).free < LOW_SPACE_BYTES:
            return f"{WRITE_ERRNOS[errno.ENOSPC]}: {exc}"
    return None


def write_error(path: Path, reason: str) -> MsaeError:
    """The message of a final output that could not be written (nothing was left in its place)."""
    return MsaeError(f"{path}: cannot write ({reason}); no output was written there")


def check_output(path: str | os.PathLike[str], folder: bool = False) -> Path:
    """Refuse, before any work, an output path that cannot become a file (or a `folder`): a
    folder in the way, or a file where one of its parent folders should be. Creates nothing."""
    final = Path(path)
    if folder and final.exists() and not final.is_dir():
        raise MsaeError(f"{final}: exists and is not a folder; give an output folder")
    if not folder and final.is_dir():
        raise MsaeError(f"{final}: is a folder; give the path of a file to write")
    blocker = next((p for p in final.parents if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise write_error(final, f"{WRITE_ERRNOS[errno.ENOTDIR]} ({blocker})")
    return final


def _writable_target(final: Path, folder: bool = False) -> None:
    """Refuse a path that cannot become a file (or a `folder`), and create the folder it goes
    in; MsaeError naming it."""
    check_output(final, folder)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise write_error(final, WRITE_ERRNOS[errno.ENOTDIR]) from None
    except OSError as exc:
        reason = _write_reason(exc, (final.parent, final))
        if reason is None:
            raise
        raise write_error(final, reason) from exc


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` only if the block succeeds.
    A failure of the place (disk full, permissions, a folder in the way) is an MsaeError naming
    `path`; whatever happens, `path` is either the complete new file or untouched."""
    final = Path(path)
    _writable_target(final)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    except OSError as exc:
        raise write_error(final, _write_reason(exc, (final,)) or str(exc)) from exc
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates 0600 files; give the result the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, final)
    except MsaeError:
        raise
    except Exception as exc:
        reason = _write_reason(exc, (tmp, final))
        if reason is None:
            raise
        raise write_error(final, reason) from exc
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def staged_dir(path: str | os.PathLike[str], done: str, prune: Sequence[str] = ()) -> Iterator[Path]:
    """Yield an empty staging folder beside the output folder `path`; only when the block
    succeeds are its files moved into `path` (the `done` file last, an older one removed first).

    A stage that fails while computing or writing (bad input, a crash, a full disk) thus leaves
    `path` exactly as it was: no half-written output folder, no stale done file beside new files.
    Files already in `path` that this run does not write are left alone, except those matching a
    `prune` glob (e.g. "galleries/latent_*.png"): the stage's own files of an earlier run."""
    final = Path(path)
    _writable_target(final, folder=True)
    try:
        stage = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    except OSError as exc:
        raise write_error(final, _write_reason(exc, (final,)) or str(exc)) from exc
    try:
        yield stage
        files = sorted((p for p in stage.rglob("*") if p.is_file()), key=lambda p: (p.name == done, str(p)))
        (final / done).unlink(missing_ok=True)
        written = {file.relative_to(stage) for file in files}
        for stale in (p for pattern in prune for p in final.glob(pattern) if p.is_file()):
            if stale.relative_to(final) not in written:
                stale.unlink()
        for file in files:
            target = final / file.relative_to(stage)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(file, target)
    except MsaeError as exc:  # a write inside the staging folder failed: name the real output
        text = str(exc)
        if not text.startswith(str(stage)):
            raise
        raise MsaeError(f"{final}{text[len(str(stage)) :]}") from exc
    except OSError as exc:
        reason = _write_reason(exc, (final,))
        if reason is None:
            raise
        raise write_error(final, reason) from exc
    finally:
        shutil.rmtree(stage, ignore_errors=True)


@contextlib.contextmanager
def literal_text() -> Iterator[None]:
    """matplotlib settings under which every string is drawn exactly as written: a '$' in a
    vocabulary term, caption or file name is not mathtext (which fails on unbalanced or invalid
    math) and LaTeX is never run. Text objects read the setting when they are created, so wrap
    the whole figure, from creation to saving (a `with` block or a decorator)."""
    import matplotlib

    with matplotlib.rc_context({"text.parse_math": False, "text.usetex": False}):
        yield


def read_text(path: str | os.PathLike[str], what: str) -> str:
    """A UTF-8 text file (`what` it is, e.g. "term list"); MsaeError naming the file when it is
    absent, a folder, unreadable or not UTF-8 (with the byte offset of the first bad byte)."""
    path = Path(path)
    if not path.is_file():
        raise MsaeError(f"{path}: {what} not found" if not path.exists() else f"{path}: {what} must be a file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise MsaeError(f"{path}: cannot read the {what} ({exc.strerror})") from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MsaeError(
            f"{path}: the {what} is not UTF-8 text ({exc.reason} at byte {exc.start}: "
            f"{data[exc.start : exc.start + 4]!r}); save it as UTF-8"
        ) from None


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
