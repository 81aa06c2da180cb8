"""Name SAE latents with vocabulary terms, in blocks of terms so memory stays bounded.

Two methods, one streaming mechanism (a scorer maps a block of terms to a [terms, latents]
matrix; the running top-r terms and the running mean/std of every latent's scores are kept):

- `decoder` (default): cosine between the latent's raw-space atom direction W_dec/scale and the
  term embeddings.
- `decoder-projection`: the term's displacement along the unit atom, (t - mean).atom, i.e. the
  cosine times the term's distance from the vocabulary mean. Terms the backbone cannot tell apart
  sit near the mean, so they score low here, while under the cosine their normalised residuals act
  as random directions that beat real words by chance (seen on the world CLIP: its thousands of
  never-seen English words collapse to one point). Use it when the vocabulary holds many words
  the backbone never learned; the cosine is the conventional choice for real CLIP.
- `activation`: the latent's dense pre-activation on the term embeddings encoded through the SAE;
  reported scores are the activations ReLU(a), ranked by a (ReLU is monotone, so ties at zero are
  broken meaningfully). Caveat: the SAE was trained on IMAGE embeddings, text embeddings lie in a
  different region (the modality gap), so many latents never fire on text or fire on all of it.

The modality gap (`gap`):
- `center` (default): the vocabulary's mean embedding is subtracted from every term. An atom is a
  *direction* of change around the image mean, so the comparable text object is a term's deviation
  from the text mean. Without it every term shares the large text-mean component: words the
  encoder never learned collapse onto nearly one embedding and frequent words become hubs that win
  for every latent (seen on the offline world: "above"/"below" ranked first everywhere). For
  `activation`, centring means encoding t - mean(vocab) + mean(train), i.e. moving the text cloud
  onto the image cloud before the encoder sees it.
- `none`: the official code's choice: cos(raw term, W_dec/scale + mean_train)
  for `decoder`, raw terms for `activation`; kept for comparison. With mean_train added every atom
  leans toward the image mean, so names tend to repeat across latents.

Whether a name beats chance is decided elsewhere (msae.concepts.null: a per-term standardised
match against random latents drawn inside the data's own span, not isotropic directions, which
CLIP-like anisotropic embeddings beat by chance).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol, get_args

import numpy as np
import torch
from tqdm.auto import tqdm

from msae.config.concepts import Gap, Method
from msae.errors import MsaeError
from msae.topk import merge_top

METHODS: tuple[str, ...] = get_args(Method)
GAPS: tuple[str, ...] = get_args(Gap)
DEFAULT_BUDGET = 1 << 25  # elements of one [terms, latents] score block (128 MiB in float32)

Scorer = Callable[[torch.Tensor], torch.Tensor]  # term block [t, d] -> scores [t, n]


class Sizes(Protocol):
    @property
    def d(self) -> int: ...

    @property
    def n_latents(self) -> int: ...


@dataclass(frozen=True)
class LatentSizes:
    d: int
    n_latents: int


class Latents(Protocol):
    """What naming, activity and the validity rule read of a set of latents: a trained SAE, or
    random directions scored the same way (msae.concepts.null)."""

    @property
    def config(self) -> Sizes: ...

    mean: torch.Tensor
    scale: torch.Tensor

    def atoms_raw_direction(self) -> torch.Tensor: ...

    def pre_activation(self, x: torch.Tensor) -> torch.Tensor: ...

    def encode_dense(self, x: torch.Tensor) -> torch.Tensor: ...

    def parameters(self) -> Iterator[torch.nn.Parameter]: ...


@dataclass
class Ranking:
    """Per latent: the best r terms (indices into the vocabulary) and their scores."""

    terms: np.ndarray  # int64 [n, r]
    scores: np.ndarray  # float32 [n, r]: reported score (cosine or activation)
    ranking_scores: np.ndarray  # float32 [n, r]: the score terms are ranked by
    z: np.ndarray  # float64 [n]: (best - mean) / std of the ranking scores over all terms
    margin: np.ndarray  # float64 [n]: best minus second ranking score (0 with one term)


def unit_rows(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit length (zero rows stay zero)."""
    return x / x.norm(dim=1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)


def stream_top_terms(
    terms: torch.Tensor,
    scorer: Scorer,
    n_latents: int,
    r: int,
    budget: int = DEFAULT_BUDGET,
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stream term blocks through `scorer`; return top-r values [r', n], indices [r', n]
    (r' = min(r, V)) and the float64 mean and std of each latent's scores over all V terms."""
    n_terms = terms.shape[0]
    block = max(1, min(n_terms, budget // max(1, n_latents)))
    keep = min(r, n_terms)
    device = terms.device
    top_val = torch.empty(0, n_latents, device=device)
    top_idx = torch.empty(0, n_latents, dtype=torch.long, device=device)
    shift: torch.Tensor | None = None
    total = torch.zeros(n_latents, dtype=torch.float64, device=device)
    total_sq = torch.zeros(n_latents, dtype=torch.float64, device=device)
    starts = range(0, n_terms, block)
    for start in tqdm(starts, desc="naming", unit="block", disable=not progress, leave=False):
        scores = scorer(terms[start : min(start + block, n_terms)]).float()
        top_val, top_idx = merge_top(top_val, top_idx, scores, start, keep)
        # shifted sums (shift = first block's mean) avoid cancellation in E[x^2] - E[x]^2
        if shift is None:
            shift = scores.mean(0)
        centred = scores.sub_(shift)
        total += centred.sum(0, dtype=torch.float64)
        total_sq += centred.square_().sum(0, dtype=torch.float64)
    assert shift is not None  # the vocabulary has at least one term
    offset = total / n_terms
    std = (total_sq / n_terms - offset * offset).clamp_min(0).sqrt()
    return top_val, top_idx, offset + shift.double(), std


def _z(best: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(best - mean) / std, with 0 where every term scored the same."""
    tiny = 1e-12 * (mean.abs() + 1)
    return torch.where(std > tiny, (best.double() - mean) / std.clamp_min(1e-300), torch.zeros_like(mean))


def check_choice(value: str, choices: tuple[str, ...], option: str) -> str:
    if value not in choices:
        raise MsaeError(f"{option} {value!r}: choose from {', '.join(choices)}")
    return value


def decoder_atoms(raw_directions: torch.Tensor, train_mean: torch.Tensor, gap: str) -> torch.Tensor:
    """Unit vectors compared with the terms: W_dec/scale (center) or W_dec/scale + mean (none)."""
    return unit_rows(raw_directions if gap == "center" else raw_directions + train_mean)


def prepare_terms(terms: torch.Tensor, method: str, gap: str, train_mean: torch.Tensor) -> torch.Tensor:
    """The term matrix a scorer consumes (see the module docstring for each method/gap)."""
    centred = terms - terms.mean(0, keepdim=True) if gap == "center" else terms
    if method == "decoder":
        return unit_rows(centred)
    if method == "decoder-projection":
        return centred
    return centred + train_mean if gap == "center" else centred


def rank_terms(
    sae: Latents,
    term_embeddings: np.ndarray | torch.Tensor,
    method: str = "decoder",
    gap: str = "center",
    r: int = 5,
    budget: int = DEFAULT_BUDGET,
    progress: bool = False,
) -> Ranking:
    """The best `r` vocabulary terms of every latent of `sae` (see the module docstring)."""
    check_choice(method, METHODS, "--method")
    check_choice(gap, GAPS, "--gap")
    if r < 1:
        raise MsaeError(f"--top-terms {r}: must be >= 1")
    param = next(sae.parameters())
    with torch.no_grad():
        terms = torch.tensor(np.asarray(term_embeddings, dtype=np.float32), device=param.device)
        if terms.ndim != 2 or terms.shape[1] != sae.config.d:
            raise MsaeError(
                f"vocabulary embeddings have shape {tuple(terms.shape)}, the SAE expects dim {sae.config.d}"
            )
        prepared = prepare_terms(terms, method, gap, sae.mean)
        n = sae.config.n_latents
        if method != "activation":
            atoms = decoder_atoms(sae.atoms_raw_direction(), sae.mean, gap)

            def atom_scores(block: torch.Tensor) -> torch.Tensor:
                return block @ atoms.T

            scorer: Scorer = atom_scores
        else:
            scorer = sae.pre_activation
        # one more than needed, for the margin to the next term
        val, idx, mean, std = stream_top_terms(prepared, scorer, n, r + 1, budget, progress)
        z = _z(val[0], mean, std)
        margin = (val[0] - val[1]).double() if val.shape[0] > 1 else torch.zeros_like(mean)
        val, idx = val[:r], idx[:r]
        reported = val.clamp_min(0) if method == "activation" else val
    return Ranking(
        terms=idx.T.cpu().numpy(),
        scores=reported.T.cpu().numpy(),
        ranking_scores=val.T.cpu().numpy(),
        z=z.cpu().numpy(),
        margin=margin.cpu().numpy(),
    )
