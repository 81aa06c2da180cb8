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
        n_b = arr.shape[0]
        mean_b = arr.mean(axis=0)
        m2_b = ((arr - mean_b) ** 2).sum(axis=0)
        if self.mean is None:
            self.count, self.mean, self._m2 = n_b, mean_b, m2_b
            return
        total = self.count + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * n_b / total
        self._m2 = self._m2 + m2_b + delta * delta * self.count * n_b / total
        self.count = total

    @property
    def total_sq_deviation(self) -> float:
        return float(self._m2.sum()) if self._m2 is not None else 0.0
