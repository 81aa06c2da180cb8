"""Reconstruction quality in raw embedding space: FVU (per sample and dataset-level) and CS.

Every path of `msae evaluate` reconstructs the same block of inputs, so what depends on the inputs
alone (float64 copy, per-sample variance and norm, per-feature moments) is computed once per block
(`Reference`) and each reconstruction is compared against it (`compare`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from msae.metrics.aggregate import FeatureMoments


@dataclass(frozen=True)
class Reference:
    """One block of inputs x in float64 and its per-sample variance and norm over the d features."""

    x64: torch.Tensor
    var: torch.Tensor
    norm: torch.Tensor
    moments: FeatureMoments

    @classmethod
    def of(cls, x: torch.Tensor) -> Reference:
        x64 = x.double()
        moments = FeatureMoments()
        moments.update(x64)
        return cls(x64, x64.var(dim=1, unbiased=False), x64.norm(dim=1), moments)


@dataclass(frozen=True)
class Comparison:
    """Per-sample FVU and CS of one reconstruction of a block, and its summed squared residual."""

    fvu: torch.Tensor
    cs: torch.Tensor
    residual_sq: float


def compare(ref: Reference, x_hat: torch.Tensor, eps: float = 1e-8) -> Comparison:
    """The paper's FVU of each sample, Var_j(x − x̂) / Var_j(x) with variances over the d features
    (the reference's `explained_variance_full`, which returns FVU despite its name; the ddof
    cancels), and CS = cos(x, x̂) with norms clamped at `eps` as torch's `F.cosine_similarity`;
    all in float64. Shapes [B]."""
    y64 = x_hat.double()
    residual = ref.x64 - y64
    var, mean = torch.var_mean(residual, dim=1, unbiased=False)
    norms = ref.norm.clamp_min(eps) * torch.linalg.vector_norm(y64, dim=1).clamp_min(eps)
    cs = torch.linalg.vecdot(ref.x64, y64) / norms
    # Σ_j r² = d·(Var_j r + (mean_j r)²): the summed squared residual without another pass
    residual_sq = float(((var + mean.square()) * residual.shape[1]).sum())
    return Comparison(fvu=var / ref.var, cs=cs, residual_sq=residual_sq)


class DatasetFVU:
    """Dataset-level FVU Σ_b‖x_b − x̂_b‖² / Σ_b‖x_b − x̄‖², streamed in float64.

    Not the paper's number (that is the per-sample mean above) but the usual one in the SAE
    literature: it weighs samples by their spread around the dataset mean instead of their own
    feature mean, so a model that only reproduces the mean scores 1.
    """

    def __init__(self) -> None:
        self._residual = 0.0
        self._moments = FeatureMoments()

    def add(self, ref: Reference, comparison: Comparison) -> None:
        self._residual += comparison.residual_sq
        self._moments.merge(ref.moments)

    def value(self) -> float:
        return self._residual / self._moments.total_sq_deviation
