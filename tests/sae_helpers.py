"""Shared fixtures for the SAE tests: planted sparse dictionaries and tiny embedding stores."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from msae import store

META = {"model": "toy", "pretrained": "none", "modality": "image", "dataset": "planted", "split": "train"}


def random_dictionary(n_atoms: int, d: int, rng: np.random.Generator) -> np.ndarray:
    atoms = rng.standard_normal((n_atoms, d))
    return atoms / np.linalg.norm(atoms, axis=1, keepdims=True)


def planted(
    n_samples: int, d: int = 64, n_atoms: int = 256, active: int = 4, seed: int = 0, offset: float = 3.0
) -> tuple[np.ndarray, np.ndarray]:
    """x = z D + c with unit atoms D [n_atoms, d], `active` non-negative coefficients in [0.5, 1.5]
    per sample, and a constant offset c (the SAE's mean removal must cope with it)."""
    rng = np.random.default_rng(seed)
    atoms = random_dictionary(n_atoms, d, rng)
    codes = np.zeros((n_samples, n_atoms))
    chosen = np.argsort(rng.random((n_samples, n_atoms)), axis=1)[:, :active]
    np.put_along_axis(codes, chosen, rng.uniform(0.5, 1.5, (n_samples, active)), axis=1)
    centre = offset * rng.standard_normal(d) / np.sqrt(d)
    return (codes @ atoms + centre).astype(np.float32), atoms


def hierarchical(
    n_samples: int, d: int = 64, n_coarse: int = 8, n_fine: int = 248, fine_active: int = 3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every sample has one frequent coarse atom (weight 2-3) plus a few rare fine atoms (weight
    0.3-0.8): the planted hierarchy a Matryoshka SAE should order coarse-first. Coarse atoms come
    in +/- pairs so their mean cancels: the data mean (removed by the SAE) then does not mix into
    every coarse direction."""
    rng = np.random.default_rng(seed)
    half = random_dictionary(n_coarse // 2, d, rng)
    coarse = np.concatenate([half, -half])
    fine = random_dictionary(n_fine, d, rng)
    which = rng.integers(0, n_coarse, n_samples)
    x = coarse[which] * rng.uniform(2.0, 3.0, (n_samples, 1))
    codes = np.zeros((n_samples, n_fine))
    chosen = np.argsort(rng.random((n_samples, n_fine)), axis=1)[:, :fine_active]
    np.put_along_axis(codes, chosen, rng.uniform(0.3, 0.8, (n_samples, fine_active)), axis=1)
    return (x + codes @ fine).astype(np.float32), coarse, which


def atom_recovery(decoder: np.ndarray, atoms: np.ndarray, threshold: float = 0.9) -> tuple[float, float, np.ndarray]:
    """(fraction of atoms whose best latent has cosine >= threshold, mean max cosine, best latent
    per atom), with decoder rows as latent directions."""
    w = decoder / np.linalg.norm(decoder, axis=1, keepdims=True)
    cos = atoms @ w.T
    best = cos.max(axis=1)
    return float((best >= threshold).mean()), float(best.mean()), cos.argmax(axis=1)


def write_store(path: Path, x: np.ndarray, meta: dict | None = None, row_group_size: int = 65536) -> Path:
    ids = [f"row-{i}" for i in range(len(x))]
    return store.write_embeddings(path, ids, x, meta or META, row_group_size=row_group_size)
