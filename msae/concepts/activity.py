"""How often each latent fires on an image store and which images fire it most (dense path).

Images are encoded in row blocks sized so one [rows, latents] block stays under a memory budget;
the running top-m images per latent are merged block by block, so any number of images works.
The dense path (ReLU over all latents) is used because it is what the paper's tables report and
it shows every latent's response, not only those that win a top-k slot.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from msae.concepts.naming import DEFAULT_BUDGET, Latents
from msae.errors import MsaeError
from msae.topk import merge_top


@dataclass
class Activity:
    """Per latent: firing counts over N images and the top-m images (index -1 when fewer fire)."""

    active_count: np.ndarray  # int64 [n]
    n_images: int
    top_images: np.ndarray  # int64 [n, m]
    top_values: np.ndarray  # float32 [n, m]

    @property
    def frequency(self) -> np.ndarray:
        """Fraction of images on which the latent's dense activation is positive."""
        return self.active_count / self.n_images


def image_activity(
    sae: Latents,
    images: np.ndarray,
    top: int = 16,
    budget: int = DEFAULT_BUDGET,
    progress: bool = True,
) -> Activity:
    """Firing counts and top-`top` images of every latent of `sae` on raw image embeddings."""
    if top < 1:
        raise MsaeError(f"--top-images {top}: must be >= 1")
    n_images = int(images.shape[0])
    if n_images == 0:
        raise MsaeError("the image store has no rows")
    n = sae.config.n_latents
    device = next(sae.parameters()).device
    rows = max(1, min(n_images, budget // n))
    keep = min(top, n_images)
    count = torch.zeros(n, dtype=torch.long, device=device)
    top_val = torch.empty(0, n, device=device)
    top_idx = torch.empty(0, n, dtype=torch.long, device=device)
    with torch.no_grad():
        for start in tqdm(range(0, n_images, rows), desc="image activations", unit="block", disable=not progress):
            stop = min(start + rows, n_images)
            x = torch.tensor(np.asarray(images[start:stop], dtype=np.float32), device=device)
            z = sae.encode_dense(x)
            count += (z > 0).sum(0)
            top_val, top_idx = merge_top(top_val, top_idx, z, start, keep)
    values = top_val.T.cpu().numpy()
    indices = top_idx.T.cpu().numpy()
    indices = np.where(values > 0, indices, -1)  # an image that does not fire is not a top image
    pad = top - keep
    if pad:
        indices = np.pad(indices, ((0, 0), (0, pad)), constant_values=-1)
        values = np.pad(values, ((0, 0), (0, pad)))
    return Activity(
        active_count=count.cpu().numpy(),
        n_images=n_images,
        top_images=indices,
        top_values=np.where(indices >= 0, values, 0).astype(np.float32),
    )
