"""Seed stability (Paulo & Belrose 2025): how many dictionary atoms two SAEs share, after matching
atoms one to one. `compare_runs` is the `msae stability` stage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from msae.config.evaluate import StabilityConfig
from msae.errors import MsaeError


@dataclass
class AtomMatching:
    """Result of a one-to-one matching of atoms of model A to atoms of model B."""

    rows: np.ndarray  # atom index in A
    cols: np.ndarray  # matched atom index in B
    cosines: np.ndarray  # cosine of each matched pair (float64)

    def mean_cosine(self) -> float:
        return float(self.cosines.mean())

    def fraction_above(self, threshold: float) -> float:
        return float((self.cosines > threshold).mean())


def match_atoms(atoms_a: torch.Tensor, atoms_b: torch.Tensor) -> AtomMatching:
    """Hungarian matching (scipy `linear_sum_assignment`, maximising total cosine) of the rows of
    `atoms_a` [n_a, d] to the rows of `atoms_b` [n_b, d]; min(n_a, n_b) pairs.

    Same score as the official alignment script with its decoder option (the decoder rows,
    normalised); that script defaults to encoder columns, which the paper's stability table does
    not distinguish. The n_a×n_b cost matrix is dense (n = 16384 needs 2 GB in float64) and
    the assignment is O(n³).
    """
    if atoms_a.shape[1] != atoms_b.shape[1]:
        raise ValueError(f"atoms have different widths: {atoms_a.shape[1]} vs {atoms_b.shape[1]}")
    a = torch.nn.functional.normalize(atoms_a.detach().double().cpu(), dim=1)
    b = torch.nn.functional.normalize(atoms_b.detach().double().cpu(), dim=1)
    cost = (a @ b.T).numpy()
    rows, cols = linear_sum_assignment(cost, maximize=True)
    return AtomMatching(rows=rows, cols=cols, cosines=cost[rows, cols])


def compare_runs(config: StabilityConfig) -> dict[str, Any]:
    """`msae stability`: match the decoder atoms of two trained runs and write the result JSON."""
    from msae.io import write_json_atomic
    from msae.runtime import configure_torch
    from msae.sae import load

    first, second = config.pair
    configure_torch()
    sae_a, sae_b = load(first, device="cpu"), load(second, device="cpu")
    if sae_a.config.d != sae_b.config.d:
        raise MsaeError(f"{first} has d={sae_a.config.d} but {second} has d={sae_b.config.d}; atoms are not comparable")
    matching = match_atoms(sae_a.W_dec, sae_b.W_dec)
    result = {
        "sae_a": str(first),
        "sae_b": str(second),
        "n_latents_a": sae_a.config.n_latents,
        "n_latents_b": sae_b.config.n_latents,
        "matched": int(len(matching.cosines)),
        "mean_cosine": matching.mean_cosine(),
        "threshold": config.threshold,
        "fraction_above": matching.fraction_above(config.threshold),
    }
    write_json_atomic(config.out, result)
    return result
