"""Synthetic CLIP-like embeddings: anisotropic, offset, with a modality gap and known concepts.

Why: a rule that decides whether a latent's name is better than chance must be tested where
chance is hard to beat. Isotropic Gaussian data is the easy case (a random direction matches
nothing); CLIP embeddings are not like that. Their covariance spectrum decays steeply, roughly as
a power law, so a few directions carry most of the variance (participation ratio
(sum lambda)^2 / sum lambda^2 of order ten; the world CLIP's vocabulary: 13 of d = 128); they sit
far from the origin (a large shared mean) and image and text embeddings occupy different regions
(the modality gap). Any direction inside such a span is close to *some* term.

The generator plants `n_concepts` concepts. Concept k has an image direction c_k drawn from the
background covariance (so it lies in the span exactly as a random in-span direction does, the
hardest case) and a word `concept{k}` whose centred text embedding has cosine about `alignment`
with c_k (cross-modal alignment is imperfect in CLIP). Each image shows a sparse random set of
concepts (frequencies log-uniform between `min_rate` and `max_rate`) on top of power-law
background noise; its caption lists the words of the concepts it shows. The vocabulary also holds
`n_distractors` words with no image concept, drawn from the same text distribution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from msae.errors import MsaeError


@dataclass(frozen=True)
class ClipLike:
    """One synthetic data set (float32 embeddings; concept k is named `term_names[k]`)."""

    images: np.ndarray  # [N, d]
    terms: np.ndarray  # [V, d]: the n_concepts concept words first, then the distractors
    term_names: list[str]
    captions: list[str]  # one per image
    concepts: np.ndarray  # [K, d] unit image-space directions of the planted concepts
    active: np.ndarray  # bool [N, K]: which concepts each image shows


def participation_ratio(x: np.ndarray) -> float:
    """(sum lambda)^2 / sum lambda^2 of the covariance of the rows of x: the effective dimension."""
    c = np.asarray(x, dtype=np.float64)
    c = c - c.mean(0)
    lam = np.linalg.svd(c, compute_uv=False) ** 2
    return float(lam.sum() ** 2 / max((lam**2).sum(), 1e-300))


def power_law_spectrum(d: int, participation: float) -> np.ndarray:
    """Eigenvalues i^-alpha (i = 1..d, summing to 1) whose participation ratio is `participation`
    (alpha found by bisection; the ratio falls monotonically from d at alpha = 0 to 1)."""
    if not 1 < participation < d:
        raise MsaeError(f"participation ratio {participation}: must lie strictly between 1 and d = {d}")
    i = np.arange(1, d + 1, dtype=np.float64)

    def ratio(alpha: float) -> float:
        lam = i**-alpha
        return float(lam.sum() ** 2 / (lam**2).sum())

    lo, hi = 0.0, 16.0
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if ratio(mid) > participation else (lo, mid)
    lam = i ** -((lo + hi) / 2)
    return lam / lam.sum()


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def clip_like(
    d: int = 128,
    n_images: int = 4000,
    n_concepts: int = 64,
    n_distractors: int = 1000,
    participation: float = 12.0,
    alignment: float = 0.8,
    min_rate: float = 0.01,
    max_rate: float = 0.1,
    gap_cosine: float = 0.3,
    seed: int = 0,
) -> ClipLike:
    """A CLIP-like data set (module docstring). Scales: the background spread has total variance
    1, each concept shows with amplitude 1-2 along its unit direction, and both modality means have
    norm 3 with cosine `gap_cosine` between them (two images have cosine about 0.6)."""
    if not 0 < alignment <= 1:
        raise MsaeError(f"alignment {alignment}: must lie in (0, 1]")
    if not 0 < min_rate <= max_rate < 1:
        raise MsaeError(f"concept rates {min_rate}..{max_rate}: need 0 < min <= max < 1")
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(d, d)))[0]
    root = basis * np.sqrt(power_law_spectrum(d, participation))  # Sigma^(1/2) = Q diag(sqrt lam)

    def in_span(n: int) -> np.ndarray:
        return rng.normal(size=(n, d)) @ root.T  # rows ~ N(0, Sigma)

    toward = _unit(rng.normal(size=d))
    other = rng.normal(size=d)
    other = _unit(other - (other @ toward) * toward)
    mean_image = 3.0 * toward
    mean_text = 3.0 * (gap_cosine * toward + np.sqrt(1 - gap_cosine**2) * other)

    concepts = _unit(in_span(n_concepts))
    rates = np.exp(rng.uniform(np.log(min_rate), np.log(max_rate), size=n_concepts))
    active = rng.random((n_images, n_concepts)) < rates
    amplitude = rng.uniform(1.0, 2.0, size=(n_images, n_concepts)) * active
    images = mean_image + amplitude @ concepts + in_span(n_images)

    # a word's centred embedding: cosine ~alignment with its concept, the rest text-specific in-span noise
    own = _unit(in_span(n_concepts))
    own = _unit(own - np.einsum("kd,kd->k", own, concepts)[:, None] * concepts)
    words = alignment * concepts + np.sqrt(1 - alignment**2) * own
    length = rng.uniform(1.0, 2.0, size=(n_concepts + n_distractors, 1))
    centred = np.vstack([words, in_span(n_distractors)]) * length
    terms = mean_text + centred + 0.01 * rng.normal(size=centred.shape)

    names = [f"concept{k:03d}" for k in range(n_concepts)] + [f"word{j:04d}" for j in range(n_distractors)]
    captions = []
    for row in active:
        shown = [names[k] for k in rng.permutation(np.flatnonzero(row))]
        captions.append("a photo of " + (" and ".join(shown) if shown else "something"))
    return ClipLike(
        images=images.astype(np.float32),
        terms=terms.astype(np.float32),
        term_names=names,
        captions=captions,
        concepts=concepts,
        active=active,
    )
