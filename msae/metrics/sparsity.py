"""Sparsity of latent codes: the paper's L0 (fraction of zeros), active counts, dead latents."""

from __future__ import annotations

import torch


def active_count(z: torch.Tensor) -> torch.Tensor:
    """The conventional L0: number of nonzero latents of each sample. Shape [B], float64."""
    return torch.count_nonzero(z, dim=1).double()


def zero_fraction(z: torch.Tensor) -> torch.Tensor:
    """The paper's "L0" of each sample: the fraction of latents exactly zero (higher = sparser),
    as the reference's `l0_messure`. Shape [B], float64."""
    return 1.0 - active_count(z) / z.shape[1]


class LatentActivity:
    """Counts, per latent, the samples on which it is nonzero; a latent never active on the whole
    evaluation set is dead there (the reference's NDN on the evaluation set)."""

    def __init__(self, n_latents: int) -> None:
        self.counts = torch.zeros(n_latents, dtype=torch.int64)

    def update(self, z: torch.Tensor) -> None:
        self.counts += torch.count_nonzero(z, dim=0).to("cpu", torch.int64)

    def never_active(self) -> int:
        return int((self.counts == 0).sum())
