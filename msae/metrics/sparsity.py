"""Sparsity of latent codes: the paper's L0 (fraction of zeros), active counts, dead latents."""

from __future__ import annotations

import torch


def active_count(z: torch.Tensor) -> torch.Tensor:
    """The conventional L0: number of nonzero latents of each sample. Shape [B], float64."""
    return torch.count_nonzero(z, dim=1).double()


def zero_fraction(active: torch.Tensor, n_latents: int) -> torch.Tensor:
    """The paper's "L0" of each sample from its active count: the fraction of the `n_latents`
    latents exactly zero (higher = sparser), as the reference's `l0_messure`. Shape [B], float64."""
    return 1.0 - active.double() / n_latents


class LatentActivity:
    """Counts, per latent, the samples on which it is nonzero; a latent never active on the whole
    evaluation set is dead there (the reference's NDN on the evaluation set)."""

    def __init__(self, n_latents: int) -> None:
        self.counts = torch.zeros(n_latents, dtype=torch.int64)

    def update(self, counts: torch.Tensor) -> None:
        """Add one block's per-latent counts of active samples ([n], e.g. count_nonzero(z, dim=0))."""
        self.counts += counts.to("cpu", torch.int64)

    def never_active(self) -> int:
        return int((self.counts == 0).sum())
