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
- `none`: the official code's choice (msae-reference §6.2): cos(raw term, W_dec/scale + mean_train)
  for `decoder`, raw terms for `activation`; kept for comparison. With mean_train added every atom
  leans toward the image mean, so names tend to repeat across latents.

Distinctness: how well the best term matches, in a unit that random directions can calibrate.
For the decoder methods atoms are unit vectors scored against one fixed term matrix, so the best
ranking score itself is comparable across latents; for `activation` each latent has its own scale
and bias, so the statistic is z = (best - mean over all terms) / std over all terms. A random
direction also has a best term (its z grows like sqrt(2 ln V)); `null_distinctness` scores random
directions exactly like latents, so a threshold can be set against chance. (z was also tried for
the decoder methods on the world CLIP: it rejected real concepts whose atom lies in the subspace
where all attribute words spread, because their std over terms is large too.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from msae.errors import MsaeError

METHODS = ("decoder", "decoder-projection", "activation")
GAPS = ("center", "none")
DEFAULT_BUDGET = 1 << 25  # elements of one [terms, latents] score block (128 MiB in float32)

Scorer = Callable[[torch.Tensor], torch.Tensor]  # term block [t, d] -> scores [t, n]


@dataclass
class Ranking:
    """Per latent: the best r terms (indices into the vocabulary) and their scores."""

    terms: np.ndarray  # int64 [n, r]
    scores: np.ndarray  # float32 [n, r]: reported score (cosine or activation)
    ranking_scores: np.ndarray  # float32 [n, r]: the score terms are ranked by
    z: np.ndarray  # float64 [n]: (best - mean) / std of the ranking scores over all terms
    distinctness: np.ndarray  # float64 [n]: best ranking score (decoder methods) or z (activation)
    margin: np.ndarray  # float64 [n]: best minus second ranking score (0 with one term)


def _unit_rows(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)


def merge_top(
    top_val: torch.Tensor, top_idx: torch.Tensor, block: torch.Tensor, start: int, keep: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge the running top-`keep` rows per column with a new block whose first row has index
    `start`: the block's own top-k first, so only 2*keep rows are ever concatenated."""
    block_val, block_pos = block.topk(min(keep, block.shape[0]), dim=0)
    pool_val = torch.cat([top_val, block_val])
    pool_idx = torch.cat([top_idx, block_pos + start])
    merged_val, pos = pool_val.topk(min(keep, pool_val.shape[0]), dim=0)
    return merged_val, pool_idx.gather(0, pos)


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
    shift = total = total_sq = None
    starts = range(0, n_terms, block)
    for start in tqdm(starts, desc="naming", unit="block", disable=not progress, leave=False):
        scores = scorer(terms[start : min(start + block, n_terms)]).float()
        top_val, top_idx = merge_top(top_val, top_idx, scores, start, keep)
        # shifted sums (shift = first block's mean) avoid cancellation in E[x^2] - E[x]^2
        if shift is None:
            shift = scores.mean(0)
            total = torch.zeros(n_latents, dtype=torch.float64, device=device)
            total_sq = torch.zeros(n_latents, dtype=torch.float64, device=device)
        centred = scores.sub_(shift)
        total += centred.sum(0, dtype=torch.float64)
        total_sq += centred.square_().sum(0, dtype=torch.float64)
    offset = total / n_terms
    std = (total_sq / n_terms - offset * offset).clamp_min(0).sqrt()
    return top_val, top_idx, offset + shift.double(), std


def _z(best: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(best - mean) / std, with 0 where every term scored the same."""
    tiny = 1e-12 * (mean.abs() + 1)
    return torch.where(std > tiny, (best.double() - mean) / std.clamp_min(1e-300), torch.zeros_like(mean))


def _distinctness(method: str, best: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    return z if method == "activation" else best.double()


def check_choice(value: str, choices: tuple[str, ...], option: str) -> str:
    if value not in choices:
        raise MsaeError(f"{option} {value!r}: choose from {', '.join(choices)}")
    return value


def decoder_atoms(raw_directions: torch.Tensor, train_mean: torch.Tensor, gap: str) -> torch.Tensor:
    """Unit vectors compared with the terms: W_dec/scale (center) or W_dec/scale + mean (none)."""
    return _unit_rows(raw_directions if gap == "center" else raw_directions + train_mean)


def prepare_terms(terms: torch.Tensor, method: str, gap: str, train_mean: torch.Tensor) -> torch.Tensor:
    """The term matrix a scorer consumes (see the module docstring for each method/gap)."""
    centred = terms - terms.mean(0, keepdim=True) if gap == "center" else terms
    if method == "decoder":
        return _unit_rows(centred)
    if method == "decoder-projection":
        return centred
    return centred + train_mean if gap == "center" else centred


def rank_terms(
    sae: torch.nn.Module,
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
            raise MsaeError(f"vocabulary embeddings have shape {tuple(terms.shape)}, the SAE expects dim {sae.config.d}")
        prepared = prepare_terms(terms, method, gap, sae.mean)
        n = sae.config.n_latents
        if method != "activation":
            atoms = decoder_atoms(sae.atoms_raw_direction(), sae.mean, gap)
            scorer: Scorer = lambda block: block @ atoms.T  # noqa: E731
        else:
            scorer = sae.pre_activation
        # one more than needed, for the margin to the next term
        val, idx, mean, std = stream_top_terms(prepared, scorer, n, r + 1, budget, progress)
        z = _z(val[0], mean, std)
        distinct = _distinctness(method, val[0], z)
        margin = (val[0] - val[1]).double() if val.shape[0] > 1 else torch.zeros_like(mean)
        val, idx = val[:r], idx[:r]
        reported = val.clamp_min(0) if method == "activation" else val
    return Ranking(
        terms=idx.T.cpu().numpy(),
        scores=reported.T.cpu().numpy(),
        ranking_scores=val.T.cpu().numpy(),
        z=z.cpu().numpy(),
        distinctness=distinct.cpu().numpy(),
        margin=margin.cpu().numpy(),
    )


def null_distinctness(
    sae: torch.nn.Module,
    term_embeddings: np.ndarray | torch.Tensor,
    method: str = "decoder",
    gap: str = "center",
    samples: int = 1000,
    seed: int = 0,
    budget: int = DEFAULT_BUDGET,
) -> np.ndarray:
    """The distinctness of `samples` random latents: Gaussian raw-space directions scored exactly
    as real latents are (decoder methods: as atoms with the median atom norm; activation: as the
    raw-space direction of the pre-activation, to which z is invariant up to scale and bias)."""
    if samples < 1:
        raise MsaeError(f"--null-samples {samples}: must be >= 1")
    param = next(sae.parameters())
    gen = torch.Generator(device="cpu").manual_seed(seed)
    with torch.no_grad():
        terms = torch.tensor(np.asarray(term_embeddings, dtype=np.float32), device=param.device)
        prepared = prepare_terms(terms, method, gap, sae.mean)
        directions = torch.randn(samples, sae.config.d, generator=gen).to(param.device)
        if method != "activation":
            raw = sae.atoms_raw_direction()
            directions = _unit_rows(directions) * raw.norm(dim=1).median()
            atoms = decoder_atoms(directions, sae.mean, gap)
        else:
            atoms = directions
        val, _, mean, std = stream_top_terms(prepared, lambda block: block @ atoms.T, samples, 1, budget)
        return _distinctness(method, val[0], _z(val[0], mean, std)).cpu().numpy()
