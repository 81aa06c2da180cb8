"""Reconstruction quality in raw embedding space: FVU (per sample and dataset-level) and CS."""

from __future__ import annotations

import torch

from msae.metrics.aggregate import FeatureMoments


def fvu_per_sample(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """The paper's FVU of each sample: Var_j(x − x̂) / Var_j(x), variances over the d features.

    Matches the reference's `explained_variance_full` (which returns FVU, not 1 − FVU as its
    name suggests); the variance ddof cancels. Computed in float64. Shape [B].
    """
    x64, r64 = x.double(), (x - x_hat).double()
    return r64.var(dim=1, unbiased=False) / x64.var(dim=1, unbiased=False)


def cosine_per_sample(x: torch.Tensor, x_hat: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """CS of each sample: cos(x, x̂) in float64, norms clamped at `eps` as torch's
    `F.cosine_similarity`. Shape [B]."""
    x64, y64 = x.double(), x_hat.double()
    norms = x64.norm(dim=1).clamp_min(eps) * y64.norm(dim=1).clamp_min(eps)
    return (x64 * y64).sum(dim=1) / norms


class DatasetFVU:
    """Dataset-level FVU Σ_b‖x_b − x̂_b‖² / Σ_b‖x_b − x̄‖², streamed in float64.

    Not the paper's number (that is the per-sample mean above) but the usual one in the SAE
    literature: it weighs samples by their spread around the dataset mean instead of their own
    feature mean, so a model that only reproduces the mean scores 1.
    """

    def __init__(self) -> None:
        self._residual = 0.0
        self._moments = FeatureMoments()

    def update(self, x: torch.Tensor, x_hat: torch.Tensor) -> None:
        self._residual += float(((x.double() - x_hat.double()) ** 2).sum())
        self._moments.update(x)

    def value(self) -> float:
        return self._residual / self._moments.total_sq_deviation
