"""The one assertion of the bad-input matrix (tests/test_hostile_*.py): a refused command exits 2
with a one-line message naming what is wrong, prints no traceback, and leaves every file under
the case's folder as it was (outputs are pre-written with an older result first, so deleting or
half-replacing them shows as much as creating them)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

from hostile_fixtures import Answer, run_cli, tree_digest

OLD = b"an older result\n"


def old_output(path: Path, done: str | None = None) -> Path:
    """Pre-write an output: a file with older bytes, or (`done` given) a folder holding an older
    done file, so the matrix can see whether a refused command touched them."""
    if done is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(OLD)
    else:
        path.mkdir(parents=True, exist_ok=True)
        (path / done).write_bytes(OLD)
    return path


def error_line(answer: Answer) -> str:
    """The `msae <stage>: error: ...` message (with any continuation lines)."""
    text = answer.stderr
    starts = [m.start() for m in re.finditer(r"^msae [^\n]*?: error: ", text, re.M)]
    return text[starts[-1] :] if starts else text[-2000:]


def expect_refusal(
    case_dir: Path,
    args: Sequence[object],
    patterns: Sequence[str],
    work: Sequence[str] = (),
) -> Answer:
    """Run `msae ARGS`; assert exit 2, no traceback, every regex of `patterns` in the message and
    no file under `case_dir` created, changed or removed, except under the `work` folders (relative
    names), where a resumable stage keeps what it finished (embed's OUT.parts/)."""
    before = tree_digest(case_dir)
    answer = run_cli(args)
    changed = sorted(
        (name, digest)
        for name, digest in set(before.items()) ^ set(tree_digest(case_dir).items())
        if not any(name.startswith(f"{w}/") for w in work)
    )
    problems = []
    if answer.code != 2:
        problems.append(f"exit {answer.code}, not 2")
    if "Traceback" in answer.stderr:
        problems.append("a traceback")
    message = error_line(answer)
    problems += [f"message lacks {p!r}" for p in patterns if not re.search(p, message, re.S)]
    if changed:
        problems.append(f"files changed: {sorted({name for name, _ in changed})}")
    assert not problems, f"{'; '.join(problems)}\n{message[:1500]}\n{answer.stderr[-1500:]}"
    return answer


def write_json(path: Path, value: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value), encoding="utf-8")
    return path
