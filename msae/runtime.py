"""Process-wide torch settings shared by every stage: device choice, seeding, CPU fixes."""

from __future__ import annotations

import ctypes
import os
import random
import sys

import numpy as np
import torch

from msae.errors import MsaeError


def resolve_device(name: str = "auto") -> torch.device:
    """Map 'auto' to cuda, then mps, then cpu; refuse a named device that is not available."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MsaeError(f"--device {name}: CUDA is not available on this machine (use --device auto or cpu)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise MsaeError(f"--device {name}: MPS is not available on this machine (use --device auto or cpu)")
    return device


# glibc hands every block above its mmap threshold (32 MB at most, and only after it has adapted)
# to the OS on free and trims the heap's top above 128 KB, so each new [4096, 4096] float tensor
# is fresh pages to fault in: 18 ms to allocate and fill 64 MB on 2 cores, 2 ms when reused, and
# ~25% of a CPU Matryoshka step. Blocks below these stay in the heap for reuse instead. The cost:
# the process keeps its heap until it exits, and freed blocks do not always fit later requests
# (`msae evaluate` at 100k rows peaked at 2.7-3.2 GB instead of 2.6 GB).
MALLOC_KEEP_BYTES = 1 << 30
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)
GLIBC_MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")  # the user's own choice wins


def keep_freed_memory() -> bool:
    """Serve tensors below MALLOC_KEEP_BYTES from glibc's heap and keep freed ones for reuse.
    Whether it applied: Linux with glibc only (other C libraries have no mallopt), and not when
    the user tuned glibc's malloc through its environment variables (GLIBC_MALLOC_ENV)."""
    if not sys.platform.startswith("linux") or any(name in os.environ for name in GLIBC_MALLOC_ENV):
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MALLOC_KEEP_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, MALLOC_KEEP_BYTES))


def configure_torch(threads: int | None = None) -> None:
    """Flush denormals on CPU (AdamW's sqrt on denormals was measured 40x slower), keep freed
    memory for reuse (`keep_freed_memory`) and honour OMP_NUM_THREADS / an explicit thread count
    so Snakemake's per-rule `threads` take effect."""
    torch.set_flush_denormal(True)
    keep_freed_memory()
    if threads is None:
        env = os.environ.get("OMP_NUM_THREADS")
        threads = int(env) if env and env.isdigit() else None
    if threads:
        torch.set_num_threads(threads)


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; return a CPU generator for code that wants its own stream."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
