"""Chance, measured on the data itself: the null behind rule 2 and the false-positive rate.

Why not isotropic directions: CLIP embeddings are strongly anisotropic (a few directions carry
most of the variance; the world CLIP's vocabulary has participation ratio 13 of d = 128), so a
random direction *inside their span* lies close to some term while an isotropic one does not.
Against an isotropic null every in-span direction "beats chance": random mixtures of vocabulary
embeddings passed rule 2 100% of the time with `decoder` naming.

The null here is random in-span latents: Gaussian mixtures of the centred image embeddings and
of the centred vocabulary embeddings (two families; each is a draw from N(0, covariance) of its
rows), used as latents that read and write their own direction (tied, no bias).

Rule 2's statistic (`match_z`): take the cosine between the latent's best term (centred, in the
frame the method scores in) and the latent's match direction (its decoder atom, or for
`activation` its encoder direction), apply Fisher's atanh, and standardise it by the mean and
standard deviation of that same term's transformed cosine over the random in-span latents.
- Per term, because on anisotropic data some terms (those along the dominant directions) are
  matched well by almost any in-span direction and others almost never: a raw best score mostly
  says which term was hit, not whether the hit beats chance. On the world CLIP (default data,
  2 x 1000 random latents) the raw best cosine of random in-span atoms reaches 0.85 (99%), above
  the cosine of planted colour and shape directions with their own names (0.77-0.91); per term
  the planted directions stand out (random atoms that pick "red" reach 0.69 at most).
- atanh, because a cosine is bounded: when chance already spreads a term's cosine widely (a term
  in a span of few dimensions) a perfect match is only a few standard deviations out, and with the
  plain cosine it could never pass; atanh stretches matches near 1. Measured: planted concepts of
  the synthetic CLIP-like set passed 61-69% with the plain cosine and 80-91% with atanh, at the
  same false-positive rate; a planted toy world of 6 concepts in 6 dimensions passed only with it.
The threshold is the `quantile` of match_z over other random in-span latents, each named by its
own best term exactly as naming ranks terms; per family, then the larger of the two (with the
image family alone, 14% of vocabulary mixtures passed on the world CLIP with `decoder` naming).

Every run measures its own false-positive rate (`false_positive_rate`): fresh random in-span
latents (another seed) go through the whole rule, rules 1 and 3 included, with and without
captions; the share judged valid is what the run's valid-concept count has to be read against.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from msae.concepts.activity import Activity, image_activity
from msae.concepts.naming import (
    DEFAULT_BUDGET,
    GAPS,
    METHODS,
    Latents,
    LatentSizes,
    Ranking,
    check_choice,
    decoder_atoms,
    prepare_terms,
    rank_terms,
    unit_rows,
)
from msae.concepts.validity import ValidityRule, caption_agreement, embedding_agreement
from msae.errors import MsaeError

FAMILIES = ("images", "terms")
MAX_MIXTURE_ROWS = 4096  # rows mixed per draw: enough to shape the covariance, cheap for any store
METHOD = (
    "in-span random latents (Gaussian mixtures of the image and of the vocabulary embeddings); "
    "rule 2: atanh(cosine of the name) standardised per term"
)


def in_span_directions(rows: np.ndarray, samples: int, rng: np.random.Generator) -> np.ndarray:
    """[samples, d] float64 draws from N(0, cov(rows)): random Gaussian mixtures of the centred rows
    (at most MAX_MIXTURE_ROWS of them, picked at random)."""
    x = np.asarray(rows, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise MsaeError(f"the in-span null needs at least 2 embeddings, got shape {x.shape}")
    if x.shape[0] > MAX_MIXTURE_ROWS:
        x = x[rng.choice(x.shape[0], MAX_MIXTURE_ROWS, replace=False)]
    x = x - x.mean(0)
    return rng.normal(size=(samples, x.shape[0])) @ x / np.sqrt(x.shape[0] - 1)


class DirectionLatents(torch.nn.Module):
    """Latents that read and write fixed raw-space directions: pre-activation (x - mean) * scale
    . unit(direction), decoder direction = the direction itself. Random in-span atoms become
    latents that naming, image activity and the rule score exactly like an SAE's."""

    mean: torch.Tensor
    scale: torch.Tensor

    def __init__(self, directions: torch.Tensor, mean: torch.Tensor, scale: float) -> None:
        super().__init__()
        # frozen parameters, so code that finds a module's device by its parameters works
        self.directions = torch.nn.Parameter(directions.float(), requires_grad=False)
        self.unit = torch.nn.Parameter(unit_rows(directions.float()), requires_grad=False)
        self.register_buffer("mean", mean.float())
        self.register_buffer("scale", torch.tensor(float(scale)))
        self.config = LatentSizes(d=int(directions.shape[1]), n_latents=int(directions.shape[0]))

    def atoms_raw_direction(self) -> torch.Tensor:
        return self.directions

    def pre_activation(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean) * self.scale) @ self.unit.T

    def encode_dense(self, x: torch.Tensor) -> torch.Tensor:
        return self.pre_activation(x).clamp_min(0)


def _sae_frame(sae: Latents) -> tuple[torch.Tensor, float, torch.device]:
    """The only msae.sae internals used here: the raw-space input mean, the input scale and the
    device of the latents being judged."""
    return sae.mean, float(sae.scale), sae.mean.device


def match_directions(latents: Latents, method: str, gap: str) -> torch.Tensor:
    """[n, d] directions whose dot product with the prepared terms is each latent's match score:
    the decoder atoms compared with the terms, or (activation) the unit raw-space direction of the
    pre-activation, read off exactly from d + 1 evaluations of the affine map (steps of one
    processed-space unit, so the differences are of the size of the encoder's weights)."""
    mean, scale, _ = _sae_frame(latents)
    with torch.no_grad():
        if method != "activation":
            return decoder_atoms(latents.atoms_raw_direction(), mean, gap)
        steps = torch.eye(mean.shape[0], device=mean.device) / scale
        pre = latents.pre_activation(torch.cat([mean[None], mean[None] + steps])).double()
        return unit_rows((pre[1:] - pre[:1]).T).float()


def match_terms(prepared: torch.Tensor, method: str, mean: torch.Tensor) -> torch.Tensor:
    """Prepared terms in the frame `match_directions` scores: for activation, relative to the
    input mean (where the pre-activation's affine part is zero)."""
    return prepared - mean if method == "activation" else prepared


@dataclass(frozen=True)
class NullModel:
    """Per-term mean/std of the transformed match over random in-span latents, and rule 2's threshold."""

    method: str
    gap: str
    term_mean: np.ndarray  # float64 [V]: mean over the random latents of atanh(cosine)
    term_std: np.ndarray  # float64 [V]: its standard deviation
    threshold: float  # the larger family quantile of match_z over the random latents
    quantile: float
    samples: int  # random latents per family
    family_thresholds: dict[str, float] = field(default_factory=dict)

    def standardise(self, stat: np.ndarray, term: np.ndarray) -> np.ndarray:
        """match_z of transformed cosines with the given terms; 0 where a term's never varies."""
        std = self.term_std[term]
        ok = std > 1e-12 * (np.abs(self.term_mean[term]) + 1)
        return np.where(ok, (stat - self.term_mean[term]) / np.where(ok, std, 1.0), 0.0)


def _check_dim(x: np.ndarray, d: int, what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != d:
        raise MsaeError(f"{what} embeddings have shape {tuple(x.shape)}, the latents expect dim {d}")
    return x


def _terms_tensor(terms: np.ndarray, d: int, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(_check_dim(terms, d, "vocabulary"), dtype=np.float32), device=device)


def _random_latents(sae: Latents, directions: np.ndarray) -> DirectionLatents:
    """Random directions as latents in the SAE's frame (atoms at the SAE's median atom norm, which
    matters only for gap none, where the input mean is added to each atom)."""
    mean, scale, device = _sae_frame(sae)
    with torch.no_grad():
        norm = sae.atoms_raw_direction().norm(dim=1).median()
        d = unit_rows(torch.tensor(directions, dtype=torch.float32, device=device)) * norm
    return DirectionLatents(d, mean, scale)


def _draw(images: np.ndarray, terms: np.ndarray, samples: int, seed: np.random.SeedSequence) -> dict[str, np.ndarray]:
    """`samples` in-span directions of each family, in FAMILIES order."""
    rngs = [np.random.default_rng(s) for s in seed.spawn(len(FAMILIES))]
    rows = {"images": images, "terms": terms}
    return {fam: in_span_directions(rows[fam], samples, rng) for fam, rng in zip(FAMILIES, rngs)}


def _fisher(score: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
    """atanh of the cosine between term and direction (score / |term|), kept finite at +-1."""
    cos = score.double() / norm.double().clamp_min(1e-30)
    return torch.atanh(cos.clamp(-1 + 1e-6, 1 - 1e-6))


def _moments_and_best(
    prepared: torch.Tensor, directions: torch.Tensor, budget: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One pass over term blocks: per-term mean/std over the latents of the Fisher-transformed
    cosine, and per latent its best term (by the match score, as naming ranks) and that term's
    transformed cosine."""
    n_terms, n = prepared.shape[0], directions.shape[0]
    block = max(1, min(n_terms, budget // (4 * max(1, n))))  # a few float64 [block, n] temporaries
    norms = prepared.norm(dim=1)
    mean = np.empty(n_terms)
    std = np.empty(n_terms)
    best_val = torch.full((n,), -torch.inf, dtype=torch.float64, device=directions.device)
    best_stat = torch.zeros(n, dtype=torch.float64, device=directions.device)
    best_idx = torch.zeros(n, dtype=torch.long, device=directions.device)
    for start in range(0, n_terms, block):
        scores = (prepared[start : start + block] @ directions.T).double()  # [t, n]
        stat = _fisher(scores, norms[start : start + block, None])
        mean[start : start + block] = stat.mean(1).cpu().numpy()
        std[start : start + block] = stat.std(1, unbiased=False).cpu().numpy()
        val, pos = scores.max(0)
        better = val > best_val
        best_val = torch.where(better, val, best_val)
        best_stat = torch.where(better, stat.gather(0, pos[None])[0], best_stat)
        best_idx = torch.where(better, pos + start, best_idx)
    return mean, std, best_idx.cpu().numpy(), best_stat.cpu().numpy()


def fit_null(
    sae: Latents,
    term_embeddings: np.ndarray,
    image_embeddings: np.ndarray,
    method: str = "decoder",
    gap: str = "center",
    quantile: float = 0.99,
    samples: int = 1000,
    seed: int = 0,
    budget: int = DEFAULT_BUDGET,
) -> NullModel:
    """Rule 2's null (module docstring): per-term moments of the match over `samples` random
    in-span latents per family, and the threshold from the match_z of as many other ones (fitting
    and judging the same draws would understate the statistic's tail)."""
    check_choice(method, METHODS, "--method")
    check_choice(gap, GAPS, "--gap")
    if samples < 10:
        raise MsaeError(f"--null-samples {samples}: must be >= 10")
    if not 0 < quantile < 1:
        raise MsaeError(f"--null-quantile {quantile}: must lie in (0, 1)")
    d = int(sae.mean.shape[0])
    _check_dim(term_embeddings, d, "vocabulary")
    _check_dim(image_embeddings, d, "image")
    moments_seed, threshold_seed = np.random.SeedSequence([seed, 0]).spawn(2)
    fitting, judged = (
        _random_latents(sae, np.vstack(list(_draw(image_embeddings, term_embeddings, samples, s).values())))
        for s in (moments_seed, threshold_seed)
    )
    with torch.no_grad():
        terms = _terms_tensor(term_embeddings, fitting.config.d, fitting.mean.device)
        prepared = match_terms(prepare_terms(terms, method, gap, fitting.mean), method, fitting.mean)
        mean, std, _, _ = _moments_and_best(prepared, match_directions(fitting, method, gap), budget)
        _, _, best, score = _moments_and_best(prepared, match_directions(judged, method, gap), budget)
    moments = NullModel(method, gap, mean, std, float("nan"), quantile, samples)
    z = moments.standardise(score, best)
    family = {f: float(np.quantile(z[i * samples : (i + 1) * samples], quantile)) for i, f in enumerate(FAMILIES)}
    return NullModel(method, gap, mean, std, max(family.values()), quantile, samples, family)


def match_z(latents: Latents, term_embeddings: np.ndarray, names: np.ndarray, null: NullModel) -> np.ndarray:
    """Rule 2's statistic of each latent for its name (term index per latent)."""
    mean, _, device = _sae_frame(latents)
    with torch.no_grad():
        terms = _terms_tensor(term_embeddings, latents.config.d, device)
        prepared = match_terms(prepare_terms(terms, null.method, null.gap, mean), null.method, mean)
        directions = match_directions(latents, null.method, null.gap)
        named = prepared[torch.as_tensor(names, device=device)]
        stat = _fisher((named * directions).sum(1), named.norm(dim=1)).cpu().numpy()
    return null.standardise(stat, np.asarray(names))


@dataclass
class Assessment:
    """Per latent: its name, the evidence of each rule and the verdicts."""

    ranking: Ranking
    activity: Activity
    names: list[str]
    match_z: np.ndarray  # rule 2's statistic
    agreement_z: np.ndarray  # rule 3 without captions
    caption_rate: np.ndarray  # rule 3 with captions (NaN without)
    caption_p: np.ndarray
    fires: np.ndarray  # rule 1
    distinct: np.ndarray  # rule 2
    agrees: np.ndarray  # rule 3, by captions when there are captions, else by embeddings
    agrees_by_embeddings: np.ndarray  # rule 3's no-caption branch (always computed)

    @property
    def valid(self) -> np.ndarray:
        return self.fires & self.distinct & self.agrees

    @property
    def valid_without_captions(self) -> np.ndarray:
        return self.fires & self.distinct & self.agrees_by_embeddings


@dataclass(frozen=True)
class Evidence:
    """What latents are judged against: the vocabulary (embeddings and terms) and the images (with
    their captions, when any)."""

    term_embeddings: np.ndarray
    term_ids: np.ndarray
    image_embeddings: np.ndarray
    captions: list[object] | None


def assess(
    latents: Latents,
    evidence: Evidence,
    null: NullModel,
    rule: ValidityRule,
    top_terms: int = 5,
    top_images: int = 16,
    budget: int = DEFAULT_BUDGET,
    progress: bool = False,
) -> Assessment:
    """Name every latent and apply the three-part valid-concept rule (validity.py)."""
    term_embeddings, term_ids = evidence.term_embeddings, evidence.term_ids
    image_embeddings, captions = evidence.image_embeddings, evidence.captions
    rule.check()
    ranking = rank_terms(latents, term_embeddings, null.method, null.gap, top_terms, budget, progress)
    activity = image_activity(latents, image_embeddings, top_images, budget, progress)
    best = ranking.terms[:, 0]
    names = np.asarray(term_ids, dtype=object)[best].tolist()
    z = match_z(latents, term_embeddings, best, null)
    terms = np.asarray(term_embeddings)
    agreement_z = embedding_agreement(terms[best], terms.mean(0), image_embeddings, activity.top_images)
    by_embeddings = rule.agrees_by_embeddings(agreement_z)
    if captions is not None:
        caption_rate, caption_p = caption_agreement(names, activity.top_images, captions)
        agrees = rule.agrees_by_captions(caption_rate, caption_p)
    else:
        caption_rate = caption_p = np.full(len(names), np.nan)
        agrees = by_embeddings
    return Assessment(
        ranking,
        activity,
        names,
        z,
        agreement_z,
        caption_rate,
        caption_p,
        fires=activity.active_count >= rule.min_active,
        distinct=z >= null.threshold,
        agrees=agrees,
        agrees_by_embeddings=by_embeddings,
    )


@dataclass(frozen=True)
class FalsePositives:
    """How many random in-span latents the whole rule calls valid."""

    rate_without_captions: float
    rate_with_captions: float | None  # None when the run has no captions
    by_family: dict[str, float]  # the `rate` of each family
    samples: int  # random latents per family

    @property
    def rate(self) -> float:
        """The rate of the branch the run uses: with captions when it has them."""
        return self.rate_without_captions if self.rate_with_captions is None else self.rate_with_captions

    def summary(self) -> dict[str, float | int | str]:
        """Flat keys for the concepts summary.json."""
        out: dict[str, float | int | str] = {
            "null_false_positive_rate": self.rate,
            "null_false_positive_rate_no_captions": self.rate_without_captions,
            **{f"null_false_positive_rate_{f}": r for f, r in self.by_family.items()},
            "null_atoms": self.samples * len(self.by_family),
            "null_method": METHOD,
        }
        if self.rate_with_captions is not None:
            out["null_false_positive_rate_captions"] = self.rate_with_captions
        return out


def false_positive_rate(
    sae: Latents,
    evidence: Evidence,
    null: NullModel,
    rule: ValidityRule,
    samples: int = 300,
    seed: int = 0,
    top_images: int = 16,
    budget: int = DEFAULT_BUDGET,
) -> FalsePositives:
    """The share of `samples` fresh random in-span latents per family (a seed stream the null did
    not use) that `assess` judges valid, in the SAE's frame."""
    if samples < 1:
        raise MsaeError(f"false-positive samples {samples}: must be >= 1")
    draws = _draw(evidence.image_embeddings, evidence.term_embeddings, samples, np.random.SeedSequence([seed, 1]))
    probe = _random_latents(sae, np.vstack(list(draws.values())))
    result = assess(probe, evidence, null, rule, 1, top_images, budget)
    valid = result.valid
    return FalsePositives(
        rate_without_captions=float(result.valid_without_captions.mean()),
        rate_with_captions=float(valid.mean()) if evidence.captions is not None else None,
        by_family={f: float(valid[i * samples : (i + 1) * samples].mean()) for i, f in enumerate(FAMILIES)},
        samples=samples,
    )
