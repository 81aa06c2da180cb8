"""One concept-intervention mechanism shared by the similarity search and the bias analysis.

The paper edits a dense SAE latent and decodes (docs/paper.md). We keep what the SAE cannot
reconstruct: x' = x + decode(z') − decode(z). The decoder is affine, so for an edit of latent c
this is exactly x + (z'_c − z_c)·atom_c with atom_c = W_dec[c] / scale (the latent's raw-space
direction), which costs O(d) per item instead of a full decode.

Edit modes (strength s):
- ``set``:   z'_c = s          (the default; s = 0 removes the concept)
- ``add``:   z'_c = z_c + s
- ``scale``: z'_c = z_c · s
Dense latents are ReLU outputs, so z'_c is clamped at 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, get_args

import numpy as np
from tqdm import tqdm

from msae.config.probes import AlphaUnit, EditMode
from msae.errors import MsaeError

MODES = get_args(EditMode)
ALPHA_UNITS = get_args(AlphaUnit)  # strengths as multiples of the latent's reference activation, or as given


def check_mode(mode: str) -> None:
    """Refuse an unknown edit mode with the list of valid ones."""
    if mode not in MODES:
        raise MsaeError(f"--mode {mode!r}: expected one of {', '.join(MODES)}")


def edited_value(z_c: np.ndarray, mode: str, strength: float) -> np.ndarray:
    """The new value of one latent for every item (clamped at 0: latents are non-negative)."""
    check_mode(mode)
    z_c = np.asarray(z_c, dtype=np.float64)
    if mode == "set":
        new = np.full_like(z_c, float(strength))
    elif mode == "add":
        new = z_c + float(strength)
    else:
        new = z_c * float(strength)
    return np.maximum(new, 0.0)


def edit(x: np.ndarray, z_c: np.ndarray, atom: np.ndarray, mode: str, strength: float) -> np.ndarray:
    """Edited embeddings x' = x + (z'_c − z_c)·atom, residual kept. x: [N, d]; z_c: [N]; atom: [d]."""
    delta = edited_value(z_c, mode, strength) - np.asarray(z_c, dtype=np.float64)
    return np.asarray(x, dtype=np.float64) + delta[:, None] * np.asarray(atom, dtype=np.float64)[None, :]


def raw_atoms(sae: Any, latents: Sequence[int]) -> np.ndarray:
    """Raw-space directions of the chosen latents, float64 [len(latents), d]."""
    import torch

    with torch.no_grad():
        atoms = sae.atoms_raw_direction().detach().to("cpu", torch.float64).numpy()
    return atoms[np.asarray(latents, dtype=np.int64)]


def dense_columns(
    sae: Any, embeddings: np.ndarray, latents: Sequence[int], batch_rows: int = 4096, desc: str | None = None
) -> np.ndarray:
    """Dense activations ReLU(a) of the chosen latents for every row, float32 [N, len(latents)].

    Encodes in batches and keeps only the wanted columns, so a large store with a wide SAE fits in
    memory."""
    import torch

    device = next(sae.parameters()).device
    cols = torch.as_tensor(np.asarray(latents, dtype=np.int64), device=device)
    out = np.empty((embeddings.shape[0], len(latents)), dtype=np.float32)
    starts = range(0, embeddings.shape[0], batch_rows)
    show = desc is not None and len(starts) > 1
    with torch.no_grad():
        for start in tqdm(starts, desc=desc, unit="batch", disable=not show):
            chunk = torch.tensor(embeddings[start : start + batch_rows], device=device, dtype=torch.float32)
            out[start : start + chunk.shape[0]] = sae.encode_dense(chunk)[:, cols].float().cpu().numpy()
    return out


def activation_scale(activations: np.ndarray, quantile: float = 0.99) -> np.ndarray:
    """Per-latent reference strength: the `quantile` of its activations where it is active (> 0).

    Strength grids are multiples of this, so α = 1 means "as strong as this concept usually gets"
    whatever the SAE's scale; a plain 99th percentile over all items would be 0 for a concept
    active on fewer than 1% of them. A latent never active gets NaN (the caller names it)."""
    acts = np.asarray(activations, dtype=np.float64)
    scale = np.full(acts.shape[1], np.nan)
    for j in range(acts.shape[1]):
        positive = acts[acts[:, j] > 0, j]
        if positive.size:
            scale[j] = float(np.quantile(positive, quantile))
    return scale
