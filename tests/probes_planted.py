"""Planted data for the probe tests: items built from known orthonormal atoms (a colour and a shape
each), and an SAE whose dictionary is exactly those atoms, so every latent's meaning is known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from msae.sae import SparseAutoencoder, make_config, save
from msae.store import EmbeddingSet, write_embeddings

COLOURS = ("red", "green", "blue", "yellow")
SHAPES = ("star", "circle", "square", "cross")
D = 24
N_LATENTS = 12  # 4 colours, 4 shapes, 4 spare directions
SCALE = 2.5  # the SAE's input scale: raw atoms are W_dec / SCALE


def colour_latent(name: str) -> int:
    return COLOURS.index(name)


def shape_latent(name: str) -> int:
    return len(COLOURS) + SHAPES.index(name)


def planted_atoms(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal dictionary [N_LATENTS, D] and a mean vector, both float64."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(D, D)))
    return q[:N_LATENTS].copy(), rng.normal(size=D)


def planted_sae() -> SparseAutoencoder:
    """A ReLU SAE whose latents read exactly the planted atoms' coefficients (times SCALE).

    b_pre is random and b_enc compensates it, so the raw-space mapping (mean, scale, b_pre) is
    exercised while the latents stay the planted coefficients."""
    atoms, mean = planted_atoms(0)
    rng = np.random.default_rng(1)
    b_pre = rng.normal(size=D) * 0.1
    sae = SparseAutoencoder(make_config("relu", D, N_LATENTS / D, l1=0.0))
    with torch.no_grad():
        sae.W_dec.copy_(torch.as_tensor(atoms, dtype=torch.float32))
        sae.W_enc.copy_(torch.as_tensor(atoms.T, dtype=torch.float32))
        sae.b_pre.copy_(torch.as_tensor(b_pre, dtype=torch.float32))
        spare = np.zeros(N_LATENTS)
        spare[len(COLOURS) + len(SHAPES) :] = -1.0  # the spare latents never fire on planted items
        sae.b_enc.copy_(torch.as_tensor(b_pre @ atoms.T + spare, dtype=torch.float32))
        sae.set_statistics(torch.as_tensor(mean, dtype=torch.float32), SCALE)
    return sae.eval()


def planted_items(
    colours: np.ndarray,
    shapes: np.ndarray,
    seed: int = 0,
    noise: float = 0.05,
    shape_strength: float = 1.0,
    shape_noise: float = 0.0,
) -> np.ndarray:
    """Raw embeddings mean + c·atom[colour] + s·atom[shape] + noise; `shape_noise` blurs the shape
    signal (random weight on every shape atom) so a classifier may prefer another cue."""
    atoms, mean = planted_atoms(0)
    rng = np.random.default_rng(seed)
    n = len(colours)
    x = np.tile(mean, (n, 1))
    x += rng.uniform(0.8, 1.2, size=(n, 1)) * atoms[[colour_latent(c) for c in colours]]
    x += shape_strength * rng.uniform(0.8, 1.2, size=(n, 1)) * atoms[[shape_latent(s) for s in shapes]]
    if shape_noise:
        shape_rows = atoms[len(COLOURS) : len(COLOURS) + len(SHAPES)]
        x += np.abs(rng.normal(size=(n, len(SHAPES)))) * shape_noise @ shape_rows
    x += rng.normal(size=x.shape) * noise
    return x.astype(np.float32)


def grid_store(per_cell: int = 10, seed: int = 0) -> EmbeddingSet:
    """Every (colour, shape) pair `per_cell` times, with attr_color / attr_shape ground truth."""
    colours = np.repeat([c for c in COLOURS for _ in SHAPES], per_cell)
    shapes = np.repeat([s for _ in COLOURS for s in SHAPES], per_cell)
    x = planted_items(colours, shapes, seed)
    ids = np.asarray([f"item-{i:04d}" for i in range(len(x))], dtype=object)
    columns = pd.DataFrame({"attr_color": colours, "attr_shape": shapes})
    return EmbeddingSet(ids, x, meta=_meta("grid", len(x)), columns=columns)


def biased_store(n: int, bias_rate: float | None, seed: int, split: str, shape_noise: float = 0.6) -> EmbeddingSet:
    """Target = star. bias_rate: P(red | star) = bias_rate and P(red | not star) = (1 - bias_rate) / 3
    (red concentrated on stars); None: colours uniform and independent of the shape."""
    rng = np.random.default_rng(seed)
    shapes = rng.choice(SHAPES, size=n)
    if bias_rate is None:
        colours = rng.choice(COLOURS, size=n)
    else:
        star = shapes == "star"
        other = rng.choice(COLOURS[1:], size=n)
        red_p = np.where(star, bias_rate, (1 - bias_rate) / 3)
        colours = np.where(rng.random(n) < red_p, "red", other)
    x = planted_items(colours, shapes, seed, shape_strength=0.35, shape_noise=shape_noise)
    ids = np.asarray([f"{split}-{i:05d}" for i in range(n)], dtype=object)
    columns = pd.DataFrame({"attr_color": colours, "attr_shape": shapes})
    return EmbeddingSet(ids, x, meta=_meta(split, n), columns=columns)


def _meta(split: str, n: int) -> dict:
    return {
        "model": "planted",
        "pretrained": "none",
        "modality": "image",
        "dim": D,
        "dataset": "planted",
        "split": split,
        "count": n,
    }


def write_store(store: EmbeddingSet, path: Path) -> Path:
    return write_embeddings(path, store.ids, store.embeddings, store.meta, store.columns)


def latents_table() -> pd.DataFrame:
    """What `msae concepts` would write for the planted SAE (the spare latents are not valid)."""
    names = [*COLOURS, *SHAPES] + [f"noise{i}" for i in range(N_LATENTS - len(COLOURS) - len(SHAPES))]
    attributes = ["color"] * len(COLOURS) + ["shape"] * len(SHAPES) + [""] * (N_LATENTS - len(COLOURS) - len(SHAPES))
    valid = [True] * (len(COLOURS) + len(SHAPES)) + [False] * (N_LATENTS - len(COLOURS) - len(SHAPES))
    return pd.DataFrame(
        {
            "latent": np.arange(N_LATENTS),
            "name": names,
            "score": np.linspace(0.9, 0.5, N_LATENTS),
            "margin": 0.1,
            "frequency": 0.25,
            "valid": valid,
            "attribute": attributes,
        }
    )


def write_sae(path: Path) -> Path:
    info = {
        "data": {"model": "planted", "pretrained": "none", "modality": "image", "dataset": "planted", "split": "train"}
    }
    return save(planted_sae(), path, info)
