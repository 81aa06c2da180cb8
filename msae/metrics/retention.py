"""CLIP-native retention: does a reconstruction still do what CLIP embeddings are used for?

Zero-shot classification (argmax cosine to one text embedding per class) and image→text
retrieval (rank of the paired caption among all captions of the evaluation set, by cosine),
computed the same way on original and reconstructed image embeddings so their ratio says how
much of CLIP's behaviour the SAE keeps.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn.functional import normalize

CHUNK_ELEMENTS = 1 << 24  # similarity entries per chunk


def zero_shot_predict(images: torch.Tensor, class_embeddings: torch.Tensor) -> torch.Tensor:
    """Index of the class whose text embedding has the highest cosine with each image, [B]."""
    return (normalize(images.double(), dim=1) @ normalize(class_embeddings.double(), dim=1).T).argmax(dim=1)


def retrieval_ranks(images: torch.Tensor, captions: torch.Tensor, paired: torch.Tensor) -> torch.Tensor:
    """0-based rank of each image's own caption (`paired[b]` indexes `captions`) among all
    captions by cosine: the number of captions strictly more similar. Ties with the true caption
    count in its favour. Chunked so at most CHUNK_ELEMENTS similarities exist at once. [B] int64."""
    caps = normalize(captions.float(), dim=1)
    step = max(1, CHUNK_ELEMENTS // max(1, caps.shape[0]))
    out = torch.empty(images.shape[0], dtype=torch.int64)
    for start in range(0, images.shape[0], step):
        img = normalize(images[start : start + step].float(), dim=1)
        sims = img @ caps.T
        true = sims.gather(1, paired[start : start + step].view(-1, 1).to(sims.device))
        out[start : start + step] = (sims > true).sum(dim=1).cpu()
    return out


def recall_hits(ranks: torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict[int, torch.Tensor]:
    """Per-image recall@k indicators (rank < k) as float64, keyed by k."""
    return {k: (ranks < k).double() for k in ks}
