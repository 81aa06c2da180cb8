"""Seed stability (Paulo & Belrose 2025): how many dictionary atoms SAEs trained with different
seeds share, after matching atoms one to one. With several seeds every pair is matched and the
mean matched cosine and the share of atoms matched above a threshold are averaged over the pairs.
`compare_runs` is the `msae stability` stage."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
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


def pairwise_stability(atoms: Sequence[torch.Tensor], threshold: float) -> dict[str, Any]:
    """Match every pair of dictionaries (rows = atoms); the mean over pairs of each pair's mean
    matched cosine and share of matched atoms above `threshold`, with their population std."""
    if len(atoms) < 2:
        raise ValueError(f"stability needs two or more dictionaries, got {len(atoms)}")
    pairs = []
    for i, j in itertools.combinations(range(len(atoms)), 2):
        matching = match_atoms(atoms[i], atoms[j])
        pairs.append(
            {
                "a": i,
                "b": j,
                "matched": int(len(matching.cosines)),
                "mean_cosine": matching.mean_cosine(),
                "fraction_above": matching.fraction_above(threshold),
            }
        )
    cosines = np.array([p["mean_cosine"] for p in pairs])
    shares = np.array([p["fraction_above"] for p in pairs])
    return {
        "threshold": threshold,
        "n_pairs": len(pairs),
        "matched": min(p["matched"] for p in pairs),
        "mean_cosine": float(cosines.mean()),
        "mean_cosine_std": float(cosines.std()),
        "fraction_above": float(shares.mean()),
        "fraction_above_std": float(shares.std()),
        "pairs": pairs,
    }


# config.json keys (and sections) that may differ between seeds of one configuration.
SEED_KEYS = ("schema_version", "msae_version", "final", "final_dead_latents", "training.seed", "training.device")
DATA_KEYS = ("data.sha256", "data.model", "data.pretrained", "data.modality")  # the data is its content


def _flat(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def configuration_differences(first: Mapping[str, Any], other: Mapping[str, Any]) -> list[str]:
    """The config.json keys in which two runs differ beyond the seed (and the machine), as
    'key: a vs b'; empty for two seeds of one configuration."""
    a, b = _flat(first), _flat(other)

    def compared(key: str) -> bool:
        if any(key == skip or key.startswith(f"{skip}.") for skip in SEED_KEYS):
            return False
        return not key.startswith("data.") or key in DATA_KEYS

    keys = sorted(k for k in set(a) | set(b) if compared(k))
    return [f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in keys if a.get(k) != b.get(k)]


def compare_runs(config: StabilityConfig) -> dict[str, Any]:
    """`msae stability`: match the decoder atoms of every pair of runs and write the result JSON.
    Unless `any_config`, the runs must be seeds of one configuration (the message names the
    first key that differs)."""
    from msae.io import write_json_atomic
    from msae.runtime import configure_torch
    from msae.sae import load
    from msae.sae.checkpoint import read_config

    runs = config.all_runs
    configure_torch()
    saes = [load(run, device="cpu") for run in runs]  # a broken run is refused by name first
    configs = [read_config(run) for run in runs]
    if not config.any_config:
        for run, other in zip(runs[1:], configs[1:]):
            differences = configuration_differences(configs[0], other)
            if differences:
                raise MsaeError(
                    f"{run} is not a seed of {runs[0]} (differs in {differences[0]}); delete it if it is "
                    "left from an earlier configuration, or pass --any-config to compare different runs"
                )
    widths = {sae.config.d for sae in saes}
    if len(widths) > 1:
        raise MsaeError(
            f"{', '.join(map(str, runs))} have different widths d ({sorted(widths)}); atoms are not comparable"
        )
    result = {
        "runs": [str(run) for run in runs],
        "seeds": [c.get("training", {}).get("seed") for c in configs],
        "n_latents": [sae.config.n_latents for sae in saes],
        **pairwise_stability([sae.W_dec for sae in saes], config.threshold),
    }
    write_json_atomic(config.out, result)
    return result
