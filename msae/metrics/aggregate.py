"""Streaming mean ± population std in float64, so per-sample metrics over millions of rows are
aggregated exactly (to float64 rounding) without holding them all in memory."""

from __future__ import annotations

import math

import numpy as np
import torch


class RunningMoments:
    """Mean and population standard deviation of a stream of scalars (Chan et al. merge).

    The paper reports `np.mean ± np.std` (ddof 0) over every evaluation sample; merging batch
    moments reproduces exactly that without the catastrophic cancellation of Σx² − N·mean².
    """

    def __init__(self) -> None:
        self.count = 0
        self.mean = 0.0
        self._m2 = 0.0

    def update(self, values: torch.Tensor | np.ndarray) -> None:
        arr = (
            values.detach().cpu().double().numpy()
            if isinstance(values, torch.Tensor)
            else np.asarray(values, np.float64)
        )
        arr = arr.reshape(-1)
        if arr.size == 0:
            return
        n_b = arr.size
        mean_b = float(arr.mean())
        m2_b = float(((arr - mean_b) ** 2).sum())
        total = self.count + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / total
        self._m2 += m2_b + delta * delta * self.count * n_b / total
        self.count = total

    @property
    def std(self) -> float:
        """Population standard deviation (ddof 0), as the paper's tables."""
        return math.sqrt(self._m2 / self.count) if self.count else float("nan")


class FeatureMoments:
    """Per-feature mean and total sum of squared deviations Σ_b ‖x_b − x̄‖² of a stream of
    vectors, merged in float64 (the denominator of the dataset-level FVU)."""

    def __init__(self) -> None:
        self.count = 0
        self.mean: np.ndarray | None = None
        self._m2: np.ndarray | None = None

    def update(self, x: torch.Tensor) -> None:
        arr = x.detach().cpu().double().numpy()
        if arr.shape[0] == 0:
            return
        block = FeatureMoments()
        block.count, block.mean = arr.shape[0], arr.mean(axis=0)
        block._m2 = ((arr - block.mean) ** 2).sum(axis=0)
        self.merge(block)

    def merge(self, other: FeatureMoments) -> None:
        """Add the rows another accumulator has seen (Chan et al.'s parallel merge)."""
        if other.mean is None or other._m2 is None:
            return
        if self.mean is None or self._m2 is None:
            self.count, self.mean, self._m2 = other.count, other.mean.copy(), other._m2.copy()
            return
        total = self.count + other.count
        delta = other.mean - self.mean
        self.mean = self.mean + delta * other.count / total
        self._m2 = self._m2 + other._m2 + delta * delta * self.count * other.count / total
        self.count = total

    @property
    def total_sq_deviation(self) -> float:
        return float(self._m2.sum()) if self._m2 is not None else 0.0
