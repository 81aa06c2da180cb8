"""Seed stability (Paulo & Belrose 2025; msae-reference §8): how many dictionary atoms two SAEs
share, after matching atoms one to one."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment


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

    Same score as the reference's `aligment_metric.py` with `--decoder` (the decoder rows,
    normalised); the reference defaults to encoder columns, which the paper's stability table
    does not distinguish. The n_a×n_b cost matrix is dense (n = 16384 needs 2 GB in float64) and
    the assignment is O(n³).
    """
    if atoms_a.shape[1] != atoms_b.shape[1]:
        raise ValueError(f"atoms have different widths: {atoms_a.shape[1]} vs {atoms_b.shape[1]}")
    a = torch.nn.functional.normalize(atoms_a.detach().double().cpu(), dim=1)
    b = torch.nn.functional.normalize(atoms_b.detach().double().cpu(), dim=1)
    cost = (a @ b.T).numpy()
    rows, cols = linear_sum_assignment(cost, maximize=True)
    return AtomMatching(rows=rows, cols=cols, cosines=cost[rows, cols])
