"""Training batches from an embedding store, already normalised, in a seeded order per epoch.

Two placements with one interface: the whole set resident on the device (default when it fits:
one gather per step, nothing else), or streamed from Parquet row groups (row groups visited in a
seeded random order, rows shuffled within each group, batches carried across group boundaries so
every batch but the last has `batch_size` rows). The order depends only on (seed, epoch), so a
resumed run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

import numpy as np
import torch

from msae import store
from msae.config.train import Placement
from msae.errors import MsaeError

PLACEMENTS = get_args(Placement)

STREAM_CHUNK_ROWS = 65536
DEVICE_MEMORY_SHARE = 0.5  # 'auto' keeps the data on the device if it takes at most this share


@dataclass
class Moments:
    """Float64 running sums for the training-set mean and mean squared centred norm."""

    count: int = 0
    total: np.ndarray | None = None
    sq_norm_sum: float = 0.0

    def add(self, x: np.ndarray) -> None:
        for start in range(0, len(x), STREAM_CHUNK_ROWS):
            x64 = x[start : start + STREAM_CHUNK_ROWS].astype(np.float64)
            self.total = x64.sum(0) if self.total is None else self.total + x64.sum(0)
            self.sq_norm_sum += float(np.einsum("ij,ij->", x64, x64))
        self.count += len(x)

    def mean(self) -> np.ndarray:
        assert self.total is not None, "no rows were added"
        return np.asarray(self.total / self.count)

    def mean_sq_centred_norm(self) -> float:
        """E||x - mu||^2 = E||x||^2 - ||mu||^2 (float64 keeps the cancellation harmless)."""
        mu = self.mean()
        return max(self.sq_norm_sum / self.count - float(mu @ mu), 0.0)


def epoch_generator(seed: int, epoch: int) -> np.random.Generator:
    """The shuffling stream of one epoch: a function of (seed, epoch) only."""
    return np.random.default_rng([seed, epoch])


def _available_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 1 << 62


class TrainingData:
    """Shuffled, normalised batches of one store; `stats()` gives the normalisation moments."""

    def __init__(
        self, path: str | os.PathLike[str], batch_size: int, device: torch.device, placement: str, seed: int
    ) -> None:
        if placement not in PLACEMENTS:
            raise MsaeError(f"--data-placement {placement!r}: choose from {', '.join(PLACEMENTS)}")
        self.path = Path(path)
        self.batch_size = batch_size
        self.device = device
        self.seed = seed
        self.meta = store.read_meta(self.path)
        self.dim = int(self.meta["dim"])
        self.rows = store.count_rows(self.path)
        if self.rows == 0:
            raise MsaeError(f"{self.path}: the embedding file is empty (0 rows); nothing to train on")
        if placement == "auto":
            need = self.rows * self.dim * 4
            placement = "device" if need <= DEVICE_MEMORY_SHARE * _available_bytes(device) else "stream"
        self.placement = placement
        self._resident: torch.Tensor | None = None
        self._moments = Moments()
        if placement == "device":
            emb = store.read_embeddings(self.path, columns=[]).embeddings
            self._moments.add(emb)
            self._resident = torch.tensor(emb, device=device)  # a copy: normalised in place below
        else:
            for part in store.iter_embeddings(self.path, batch_rows=STREAM_CHUNK_ROWS):
                self._moments.add(part.embeddings)
        self._mean: torch.Tensor | None = None
        self._scale = 1.0

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.rows / self.batch_size)

    def stats(self) -> Moments:
        return self._moments

    def normalise_with(self, mean: torch.Tensor, scale: float) -> None:
        """Fix the preprocessing (x - mean) * scale; applied once in place for resident data."""
        self._mean = mean.to(self.device, torch.float32)
        self._scale = float(scale)
        if self._resident is not None:
            self._resident.sub_(self._mean).mul_(self._scale)

    def batches(self, epoch: int) -> Iterator[torch.Tensor]:
        """The processed batches of `epoch`, in the epoch's seeded order."""
        if self._mean is None:
            raise RuntimeError("normalise_with() must be called before batches()")
        rng = epoch_generator(self.seed, epoch)
        if self._resident is not None:
            order = torch.from_numpy(rng.permutation(self.rows)).to(self.device)
            for start in range(0, self.rows, self.batch_size):
                yield self._resident.index_select(0, order[start : start + self.batch_size])
            return
        yield from self._streamed(rng)

    def _streamed(self, rng: np.random.Generator) -> Iterator[torch.Tensor]:
        groups = rng.permutation(store.count_row_groups(self.path))
        carry: torch.Tensor | None = None
        # ids and values were checked when __init__ streamed the store: not again every epoch
        for part in store.iter_row_groups(self.path, groups.tolist(), check_finite=False, check_ids=False):
            rows = torch.from_numpy(part.embeddings[rng.permutation(len(part))]).to(self.device)
            assert self._mean is not None  # normalise_with() ran (checked by batches())
            rows = (rows - self._mean) * self._scale
            carry = rows if carry is None else torch.cat([carry, rows])
            full = len(carry) - len(carry) % self.batch_size
            for start in range(0, full, self.batch_size):
                yield carry[start : start + self.batch_size]
            carry = carry[full:]
        if carry is not None and len(carry):
            yield carry
