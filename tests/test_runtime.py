"""Process-wide settings: glibc keeps the big blocks tensors free for reuse."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

import pytest

from msae.runtime import GLIBC_MALLOC_ENV

PROBE = """
import ctypes, sys, torch
from msae.runtime import keep_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
applied = keep_freed_memory() if sys.argv[1] == "keep" else None
before = libc.mallinfo2()
block = torch.empty(16 << 20)  # 64 MB, above glibc's own mmap threshold
during = libc.mallinfo2()
del block
after = libc.mallinfo2()
print(applied, during.hblkhd - before.hblkhd, after.arena - during.arena, after.fordblks - before.fordblks)
"""


glibc_only = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not hasattr(ctypes.CDLL(None), "mallinfo2"),
    reason="mallopt/mallinfo2 are glibc's (Linux); elsewhere keep_freed_memory does nothing",
)


def _probe(mode: str, **env: str) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if k not in GLIBC_MALLOC_ENV}
    command = [sys.executable, "-c", PROBE, mode]
    return subprocess.run(command, capture_output=True, text=True, check=True, env={**clean, **env}).stdout.split()


@glibc_only
def test_big_tensors_come_from_the_heap_and_stay_there_when_freed():
    applied, mapped, _, _ = _probe("default")
    assert applied == "None" and int(mapped) >= 64 << 20  # the probe sees glibc's default: a fresh mapping
    applied, mapped, arena_change, freed_kept = _probe("keep")
    assert applied == "True"
    assert int(mapped) == 0  # served from the heap ...
    assert int(arena_change) == 0 and int(freed_kept) >= 63 << 20  # ... and kept there once freed


@glibc_only
@pytest.mark.parametrize("name", GLIBC_MALLOC_ENV)
def test_a_user_tuned_glibc_malloc_is_left_alone(name):
    applied, mapped, _, _ = _probe("keep", **{name: str(32 << 20)})
    assert applied == "False" and int(mapped) >= 64 << 20
