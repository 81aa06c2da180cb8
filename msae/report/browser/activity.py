"""What each latent does on an image store, for its browser page (dense path, streamed).

Two passes over the store in row blocks (one [rows, latents] block stays under a memory budget):

1. per latent: how many images fire it, its largest activation, its top-m images and the best
   rank it ever reaches in an image (1 = that image's largest latent);
2. per latent: a histogram of its positive activations on `bins` equal bins over [0, max], and a
   seeded uniform sample of activating images that are not already top images.

The best rank gives the Matryoshka level at which a latent first appears: a latent is among the
top-k latents of some image exactly when its best rank is <= k, so the smallest nesting k >= best
rank is that level (`first_level`), for every k at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from msae.errors import MsaeError

DEFAULT_BUDGET = 1 << 24  # elements of one [rows, latents] block (64 MiB in float32)
Encoder = Callable[[torch.Tensor], torch.Tensor]  # RAW embeddings [B, d] -> dense latents [B, n]


@dataclass
class LatentActivity:
    """Per latent over N images (image index -1 = no such image)."""

    n_images: int
    active_count: np.ndarray  # int64 [n]: images with a positive activation
    max_value: np.ndarray  # float32 [n]: largest activation (0 when never active)
    top_images: np.ndarray  # int64 [n, top]: most activating images, best first
    top_values: np.ndarray  # float32 [n, top]
    random_images: np.ndarray  # int64 [n, random]: uniform sample of the other activating images
    random_values: np.ndarray  # float32 [n, random]
    histogram: np.ndarray  # int64 [n, bins]: positive activations on bins over [0, max_value]
    best_rank: np.ndarray  # int64 [n]: smallest rank in any image (1 = largest); 0 = never active


def _merge(
    keys: torch.Tensor,
    idx: torch.Tensor,
    vals: torch.Tensor,
    block_keys: torch.Tensor,
    block_vals: torch.Tensor,
    start: int,
    keep: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep the `keep` largest keys per column over the running pool and a new block whose first
    row is image `start`, carrying each kept entry's image index and activation along."""
    k = min(keep, block_keys.shape[0])
    top_keys, pos = block_keys.topk(k, dim=0)
    pool_keys = torch.cat([keys, top_keys])
    pool_idx = torch.cat([idx, pos + start])
    pool_vals = torch.cat([vals, block_vals.gather(0, pos)])
    kept, where = pool_keys.topk(min(keep, pool_keys.shape[0]), dim=0)
    return kept, pool_idx.gather(0, where), pool_vals.gather(0, where)


def _ranks(z: torch.Tensor) -> torch.Tensor:
    """1-based rank of every entry within its row, largest first (ties: lower latent first)."""
    order = torch.argsort(z, dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(1, z.shape[1] + 1, device=z.device).expand_as(order))
    return ranks


def _finish(keys: torch.Tensor, idx: torch.Tensor, vals: torch.Tensor, width: int) -> tuple[np.ndarray, np.ndarray]:
    """[keep, n] pools -> [n, width] arrays, -1 / 0 where the key says 'no image' (< 0)."""
    ok = keys > 0 if keys.numel() else keys.bool()
    images = torch.where(ok, idx, torch.full_like(idx, -1)).T.cpu().numpy()
    values = torch.where(ok, vals, torch.zeros_like(vals)).T.cpu().numpy().astype(np.float32)
    pad = width - images.shape[1]
    if pad:
        images = np.pad(images, ((0, 0), (0, pad)), constant_values=-1)
        values = np.pad(values, ((0, 0), (0, pad)))
    return images.astype(np.int64), values


def latent_activity(
    encode: Encoder,
    images: np.ndarray,
    n_latents: int,
    top: int = 16,
    random: int = 8,
    bins: int = 24,
    seed: int = 0,
    budget: int = DEFAULT_BUDGET,
    device: torch.device | str = "cpu",
) -> LatentActivity:
    """Statistics of every latent of `encode` (dense activation) on raw image embeddings."""
    if top < 1 or random < 0 or bins < 1:
        raise MsaeError(f"top={top}, random={random}, bins={bins}: need top >= 1, random >= 0, bins >= 1")
    n_images = int(images.shape[0])
    if n_images == 0:
        raise MsaeError("the image store has no rows")
    n = n_latents
    rows = max(1, min(n_images, budget // max(1, n)))
    starts = range(0, n_images, rows)

    def blocks():
        for start in starts:
            stop = min(start + rows, n_images)
            x = torch.as_tensor(np.asarray(images[start:stop], dtype=np.float32), device=device)
            yield start, encode(x).float().clamp_min(0)

    empty = (
        torch.empty(0, n, device=device),
        torch.empty(0, n, dtype=torch.long, device=device),
        torch.empty(0, n, device=device),
    )
    count = torch.zeros(n, dtype=torch.long, device=device)
    peak = torch.zeros(n, device=device)
    best = torch.full((n,), n + 1, dtype=torch.long, device=device)
    t_keys, t_idx, t_vals = empty
    with torch.no_grad():
        for start, z in blocks():
            active = z > 0
            count += active.sum(0)
            peak = torch.maximum(peak, z.max(0).values)
            best = torch.minimum(best, torch.where(active, _ranks(z), n + 1).min(0).values)
            t_keys, t_idx, t_vals = _merge(t_keys, t_idx, t_vals, z, z, start, top)

        top_images, top_values = _finish(t_keys, t_idx, t_vals, top)
        is_top = torch.as_tensor(top_images, device=device)  # [n, top]
        gen = torch.Generator(device="cpu").manual_seed(seed)
        hist = torch.zeros(n * bins, dtype=torch.long, device=device)
        r_keys, r_idx, r_vals = empty
        scale = torch.where(peak > 0, bins / peak, torch.zeros_like(peak))
        offsets = torch.arange(n, device=device) * bins
        for start, z in blocks():
            active = z > 0
            which = torch.clamp((z * scale).long(), max=bins - 1) + offsets
            hist += torch.bincount(which[active], minlength=n * bins)
            if random:
                local = is_top - start  # top images inside this block, as block rows
                inside = (local >= 0) & (local < z.shape[0])
                taken = torch.zeros_like(active)
                cols = torch.arange(n, device=device).unsqueeze(1).expand_as(local)
                taken[local[inside], cols[inside]] = True
                keys = torch.rand(z.shape, generator=gen).to(device) + 1.0  # > 0: a candidate
                keys = torch.where(active & ~taken, keys, torch.full_like(keys, -1.0))
                r_keys, r_idx, r_vals = _merge(r_keys, r_idx, r_vals, keys, z, start, random)
        random_images, random_values = _finish(r_keys, r_idx, r_vals, random)
    return LatentActivity(
        n_images=n_images,
        active_count=count.cpu().numpy().astype(np.int64),
        max_value=peak.cpu().numpy().astype(np.float32),
        top_images=top_images,
        top_values=top_values,
        random_images=random_images,
        random_values=random_values,
        histogram=hist.view(n, bins).cpu().numpy().astype(np.int64),
        best_rank=np.where(count.cpu().numpy() > 0, best.cpu().numpy(), 0).astype(np.int64),
    )


def first_level(best_rank: np.ndarray, ladder: Sequence[int]) -> np.ndarray:
    """The smallest k of `ladder` (ascending) with k >= best rank: the nesting level at which a
    latent is first among the top-k latents of some image; 0 for a latent that never fires (or
    whose best rank lies beyond the ladder)."""
    levels = np.asarray(sorted(ladder), dtype=np.int64)
    if levels.size == 0:
        raise MsaeError("the nesting ladder is empty")
    pos = np.searchsorted(levels, best_rank, side="left")
    found = (best_rank > 0) & (pos < levels.size)
    return np.where(found, levels[np.minimum(pos, levels.size - 1)], 0)
