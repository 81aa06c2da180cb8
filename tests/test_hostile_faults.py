"""Bad-input matrix, input class "faults" (issue 14): a full disk, an interrupted write and a
process killed with SIGKILL while it writes, × the commands that write results. A refused write
exits 2 saying "no space left on device" and naming the output; in every case the previous output
is left exactly as it was (atomic files, staged output folders)."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hostile_checks import OLD, expect_refusal, old_output
from hostile_fixtures import build, run_cli, tree_digest

import msae.io

CPU = ("--device", "cpu")


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return build(tmp_path_factory.mktemp("good"))


def _writers(good: dict, out: Path) -> dict[str, tuple[list, str | None, tuple[str, ...]]]:
    """command -> (command line, the output's done file or None for a file, work folders)."""
    return {
        "gather": (["gather", "--out", out, good["images"]], None, ()),
        "mix": (["mix", "--image", good["images"], "--text", good["captions"], "--out", out], None, ()),
        "vocab": (["vocab", "--out", out, "--n-common", "0"], None, ()),
        "stability": (["stability", good["sae"], good["sae"], "--out", out], None, ()),
        "embed": (
            ["embed", "--source", "terms", "--root", good["terms"], "--model", "msae-world", "--pretrained", "builtin",
             "--out", out, *CPU],
            None, (f"out/{out.name}.parts",),
        ),
        "probe bias": (
            ["probe", "bias", "--sae", good["sae"], "--train", good["images"], "--test", good["images"],
             "--target-column", "attr_big", "--candidates", "0", "--out", out, *CPU],
            "summary.json", (),
        ),
        "probe similarity": (
            ["probe", "similarity", "--sae", good["sae"], "--embeddings", good["images"], "--concept", "0",
             "--queries", "item000", "--out", out, *CPU],
            "summary.json", (),
        ),
        "export": (["export", "--format", "sparsify", "--sae", good["sae"], "--out", out], "cfg.json", ()),
        "concepts": (
            ["concepts", "--sae", good["sae"], "--vocab", good["vocab"], "--images", good["images"], "--out", out,
             "--null-samples", "10", "--gallery-limit", "1", *CPU],
            "summary.json", (),
        ),
        "train": (
            ["train", "--embeddings", good["images"], "--variant", "topk", "--k", "4", "--expansion", "2",
             "--epochs", "1", "--batch-size", "16", "--out", out, *CPU],
            "config.json", (f"out/{out.name}/checkpoint",),
        ),
    }  # fmt: skip


COMMANDS = (
    "gather",
    "mix",
    "vocab",
    "stability",
    "embed",
    "probe bias",
    "probe similarity",
    "export",
    "concepts",
    "train",
)


def _disk_full_under(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every rename into `folder` fails as on a full disk (the last step of every atomic write)."""
    replace = os.replace

    def full(src, dst, *args, **kwargs):
        if Path(dst).resolve().is_relative_to(folder.resolve()):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(msae.io.os, "replace", full)


@pytest.mark.parametrize("command", COMMANDS)
def test_full_disk_is_reported_and_leaves_the_old_output(good, tmp_path, monkeypatch, command):
    name = "result" if command not in ("gather", "mix", "embed", "stability", "vocab") else "result.out"
    line, done, work = _writers(good, tmp_path / "out" / name)[command]
    old_output(tmp_path / "out" / name, done)
    _disk_full_under(tmp_path / "out", monkeypatch)
    patterns = ["out/", "no space left on device"]
    expect_refusal(tmp_path, line, patterns, work=work)
    assert not [p for p in (tmp_path / "out").rglob("*.tmp")], "a temporary file was left behind"


@pytest.mark.parametrize("command", ["gather", "probe bias", "export"])
def test_interrupted_write_leaves_the_old_output(good, tmp_path, monkeypatch, command):
    """Ctrl-C (or any exception) in the middle of writing a final file: the old file stays."""
    name = "result" if command != "gather" else "result.parquet"
    line, done, _ = _writers(good, tmp_path / "out" / name)[command]
    old_output(tmp_path / "out" / name, done)
    before = tree_digest(tmp_path)
    real = msae.io.os.chmod

    def interrupted(path, mode, *args, **kwargs):  # called inside atomic_path, after the data is written
        raise KeyboardInterrupt

    monkeypatch.setattr(msae.io.os, "chmod", interrupted)
    assert run_cli(line).code == 130
    monkeypatch.setattr(msae.io.os, "chmod", real)
    assert tree_digest(tmp_path) == before
    assert not [p for p in (tmp_path / "out").rglob("*.tmp")]


KILLED_GATHER = """
import sys, time
import pyarrow.parquet as pq
write = pq.ParquetWriter.write_table
def slow(self, table, *args, **kwargs):
    write(self, table, *args, **kwargs)
    print("writing", flush=True)
    time.sleep(60)
pq.ParquetWriter.write_table = slow
from msae.cli import main
sys.exit(main(["gather", "--out", sys.argv[1], sys.argv[2]]))
"""


def test_sigkill_while_writing_leaves_the_old_output_and_a_rerun_completes(good, tmp_path):
    """kill -9 in the middle of `msae gather`'s write: the old output is untouched (only a hidden
    temporary file remains), and running the command again writes the complete result."""
    out = old_output(tmp_path / "out" / "all.parquet")
    script = tmp_path / "killed.py"
    script.write_text(textwrap.dedent(KILLED_GATHER))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    process = subprocess.Popen(
        [sys.executable, str(script), str(out), str(good["images"])], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "writing"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        process.kill()
    assert process.returncode == -signal.SIGKILL
    assert out.read_bytes() == OLD
    assert [p.name.startswith(".all.parquet.") for p in (tmp_path / "out").iterdir() if p != out] == [True]
    assert run_cli(["gather", "--out", out, good["images"]]).code == 0
    assert pq.read_table(out).num_rows == pq.read_table(good["images"]).num_rows


def _mount_tmpfs(folder: Path, size: str) -> bool:
    """A real small file system at `folder` (root only; the test is skipped elsewhere)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    return done.returncode == 0


def _fill(path: Path, keep_free: int) -> None:
    """Write `path` until the file system is full, then free `keep_free` bytes (less than any
    output needs)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    os.truncate(path, path.stat().st_size - keep_free)


@pytest.mark.parametrize("command", ["gather", "probe bias", "export", "embed"])
def test_really_full_disk(good, tmp_path, command):
    """The same on a real full file system (a 256 KiB tmpfs nearly filled): the writers' own
    errors (pyarrow, matplotlib, safetensors, torch) are reported as a full disk."""
    disk = tmp_path / "out"
    if not _mount_tmpfs(disk, "256k"):
        pytest.skip("needs root to mount a small tmpfs")
    try:
        name = "result" if command in ("probe bias", "export") else "result.parquet"
        line, done, work = _writers(good, disk / name)[command]
        old_output(disk / name, done)
        _fill(disk / "filler", keep_free=4096)
        expect_refusal(tmp_path, line, [name, "no space left on device"], work=work)
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)
