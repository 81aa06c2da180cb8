"""When is a latent's name trustworthy? The valid-concept rule (the paper's Table 3 quantity).

The paper's exact rule (its Appendix A) is not public, so msae states its
own. A latent is a *valid concept* when all three hold:

1. It fires: its dense activation is positive on at least `min_active` images, so it has top
   images to show and check.
2. Its name beats chance: its match_z (msae.concepts.null: the atanh of the cosine between its
   best term and its atom, standardised per term by that quantity's mean and standard deviation
   over random latents drawn inside the data's own span) is at least the `null_quantile`
   quantile of match_z for other such random latents, each named by its own best term. Any
   direction has a best term, and on anisotropic data such as CLIP's every direction inside the
   span matches some term well; a real concept matches its term better than random in-span
   directions that picked the same term do.
3. Its name agrees with its images. With captions: the term occurs (as a whole word or phrase) in
   at least `min_caption_rate` of the captions of the latent's top images (the name describes most
   of them), and more often than its base rate over all captions explains, one-sided binomial
   p <= `caption_alpha` (a word that is in every caption proves nothing). Without captions: the term's centred text
   direction u separates the latent's top images from random images of the same size, in
   standard units: z = u.(mean_top - mean_all) / sqrt(u'Cu / m * (N - m)/(N - 1)), the exact
   standard deviation of that projection for a random m-subset (C = image covariance); valid when
   z >= `min_agreement_z`. Names picked from the decoder are thus confirmed by what the encoder
   actually fires on.

Every concepts run measures the rule's false-positive rate on fresh random in-span latents
(msae.concepts.null.false_positive_rate), with and without captions.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from msae.errors import MsaeError


@dataclass(frozen=True)
class ValidityRule:
    """Thresholds of the valid-concept rule (module docstring)."""

    min_active: int = 10
    null_quantile: float = 0.99
    min_agreement_z: float = 3.0
    caption_alpha: float = 0.01
    min_caption_rate: float = 0.5

    def check(self) -> ValidityRule:
        if self.min_active < 1:
            raise MsaeError(f"--min-active {self.min_active}: must be >= 1")
        if not 0 < self.null_quantile < 1:
            raise MsaeError(f"--null-quantile {self.null_quantile}: must lie in (0, 1)")
        if not 0 < self.caption_alpha < 1:
            raise MsaeError(f"--caption-alpha {self.caption_alpha}: must lie in (0, 1)")
        if not 0 <= self.min_caption_rate <= 1:
            raise MsaeError(f"--min-caption-rate {self.min_caption_rate}: must lie in [0, 1]")
        return self

    def agrees_by_captions(self, rate: np.ndarray, p: np.ndarray) -> np.ndarray:
        """Rule 3 with captions: the name is in enough top captions, above its base rate."""
        return (p <= self.caption_alpha) & (rate >= self.min_caption_rate)

    def agrees_by_embeddings(self, agreement_z: np.ndarray) -> np.ndarray:
        """Rule 3 without captions: the name's direction separates the top images."""
        return agreement_z >= self.min_agreement_z


def embedding_agreement(
    term_vectors: np.ndarray, vocab_mean: np.ndarray, images: np.ndarray, top_images: np.ndarray
) -> np.ndarray:
    """z of each named term's direction on its latent's top-image mean vs random image subsets
    (rule 3 without captions). term_vectors [n, d] are the raw embeddings of each latent's name;
    top_images [n, m] indexes `images` (-1 = none). 0 where there are no or all images."""
    x = np.asarray(images, dtype=np.float64)
    n_images = x.shape[0]
    mu = x.mean(0)
    cov = np.cov(x, rowvar=False, bias=True).reshape(x.shape[1], x.shape[1])
    u = np.asarray(term_vectors, dtype=np.float64) - np.asarray(vocab_mean, dtype=np.float64)
    u /= np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-300)
    valid = top_images >= 0
    m = valid.sum(1)
    sums = np.zeros_like(u)
    for col in range(top_images.shape[1]):
        rows = valid[:, col]
        sums[rows] += x[top_images[rows, col]]
    mean_top = sums / np.maximum(m, 1)[:, None]
    shift = np.einsum("nd,nd->n", u, mean_top - mu)
    var_pop = np.einsum("nd,de,ne->n", u, cov, u)
    var_mean = var_pop / np.maximum(m, 1) * (n_images - m) / max(n_images - 1, 1)
    ok = (m > 0) & (m < n_images) & (var_mean > 0)
    return np.where(ok, shift / np.sqrt(np.where(ok, var_mean, 1.0)), 0.0)


def caption_tokens(caption: object) -> str:
    """A caption as ' w1 w2 ... ' (lower-case word tokens) so whole-word phrases match by `in`."""
    if not isinstance(caption, str):
        return ""
    return " " + " ".join(re.findall(r"[^\W_]+", caption.lower())) + " "


def caption_agreement(
    names: Sequence[str], top_images: np.ndarray, captions: Sequence[object]
) -> tuple[np.ndarray, np.ndarray]:
    """Per latent: the share of its captioned top images whose caption contains the name, and the
    one-sided binomial p that it occurs there no more often than its base rate (rule 3 with
    captions); rate 0 and p 1 where no top image has a caption."""
    docs = [caption_tokens(c) for c in captions]
    has_caption = np.array([bool(d) for d in docs])
    n_captioned = int(has_caption.sum())
    if n_captioned == 0:
        raise MsaeError("captions were given but none of the images has a caption")
    keys = [caption_tokens(name) for name in names]
    single_df = Counter(word for d in docs if d for word in set(d.split()))
    base: dict[str, float] = {}
    for key in set(keys):
        words = key.split()
        if not words:
            base[key] = 0.0
        elif len(words) == 1:
            base[key] = single_df[words[0]] / n_captioned
        else:
            base[key] = sum(key in d for d in docs) / n_captioned
    p = np.ones(len(names))
    rate = np.zeros(len(names))
    for j, key in enumerate(keys):
        picks = [i for i in top_images[j] if i >= 0 and has_caption[i]]
        if not picks or not key.strip():
            continue
        hits = sum(key in docs[i] for i in picks)
        rate[j] = hits / len(picks)
        p[j] = float(stats.binom.sf(hits - 1, len(picks), base[key])) if hits else 1.0
    return rate, p
