"""Which latents of other runs match a latent: decoder cosine between runs of the same backbone.

Two SAEs trained on the same embeddings live in the same (centred) space up to a global scale,
so the cosine of their decoder atoms says whether they found the same direction; the `top` best
alive latents of every other run are kept per latent. This is the per-latent view of what
`msae stability` summarises as one number.

A high cosine alone proves little on CLIP-like data: the embeddings fill few directions, the
atoms follow them, and a random direction drawn like the data (from the embeddings' covariance)
already matches some atom well (on the world CLIP: cosine ~0.8 at the 99th percentile, against
~0.36 for an isotropic random direction). `chance_cosine` measures that level per run, and the
page marks matches below it as chance.
"""

from __future__ import annotations

import numpy as np


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero)."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)


def best_matches(
    decoder_a: np.ndarray, decoder_b: np.ndarray, alive_b: np.ndarray, top: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """For every atom of A: the `top` alive atoms of B with the largest cosine, best first, as
    (indices int64 [n_a, t], cosines float32 [n_a, t]) with t = min(top, alive atoms of B)."""
    candidates = np.flatnonzero(alive_b)
    t = min(top, candidates.size)
    if t == 0:
        return np.empty((decoder_a.shape[0], 0), np.int64), np.empty((decoder_a.shape[0], 0), np.float32)
    cos = unit_rows(decoder_a.astype(np.float64)) @ unit_rows(decoder_b[candidates].astype(np.float64)).T
    part = np.argpartition(-cos, t - 1, axis=1)[:, :t]
    part_cos = np.take_along_axis(cos, part, axis=1)
    order = np.argsort(-part_cos, axis=1, kind="stable")
    picked = np.take_along_axis(part, order, axis=1)
    return candidates[picked].astype(np.int64), np.take_along_axis(cos, picked, axis=1).astype(np.float32)


def chance_cosine(
    decoder: np.ndarray,
    alive: np.ndarray,
    data: np.ndarray,
    samples: int = 1000,
    quantile: float = 0.99,
    seed: int = 0,
    max_rows: int = 4096,
) -> float:
    """The `quantile` of the best cosine that random data-like directions reach against the alive
    atoms of `decoder`. A direction is a Gaussian combination of centred data rows, i.e. a draw
    from N(0, C) with C the data covariance, so it is exactly as anisotropic as the embeddings."""
    atoms = decoder[np.asarray(alive, dtype=bool)]
    if atoms.shape[0] == 0:
        return float("nan")
    rng = np.random.default_rng(seed)
    rows = rng.choice(data.shape[0], size=min(data.shape[0], max_rows), replace=False)
    centred = data[rows].astype(np.float64) - data[rows].astype(np.float64).mean(0)
    directions = rng.standard_normal((samples, centred.shape[0])) @ centred
    best = (unit_rows(directions) @ unit_rows(atoms.astype(np.float64)).T).max(1)
    return float(np.quantile(best, quantile))
