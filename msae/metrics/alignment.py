"""CKNNA (Huh et al. 2024, "The Platonic Representation Hypothesis"): kernel alignment restricted
to mutual k-nearest neighbours, between raw embeddings and SAE latents.

Definition followed (the official code's; docs/paper.md): linear kernels K = AAᵀ, L = BBᵀ (raw inner products,
no normalisation), k nearest neighbours of each row by inner product with the row itself
excluded, mask_K / mask_L the 0/1 neighbour indicators, and

    sim(K, L) = HSIC_u(mask ⊙ K, mask ⊙ L)  with mask = mask_K ⊙ mask_L,
    CKNNA     = sim_KL / sqrt(sim_KK · sim_LL),

where HSIC_u is the unbiased estimator (Song et al. 2012) and sim_KK uses mask_K alone.

Memory: the masked kernels have at most k nonzeros per row, so HSIC_u is evaluated on the
m·k masked entries (trace, sums and the 1ᵀK̃L̃1 term all reduce to sparse sums) and the m×m
kernels are only ever built a chunk of rows at a time to find neighbours: memory is O(chunk·m +
m·k), never m×m. Kernel values at the neighbours are recomputed as dot products in the
features' precision (a float32 sampled product: ~1e-6 relative, far below CKNNA's own sampling
error) and returned in float64.

Speed: the neighbour search of SAE latents (non-negative) runs its m×m products in bfloat16 where
the CPU has native bf16 dot products (~4x fp32), and then certifies the result: every row keeps
k + CANDIDATES_EXTRA candidates, their kernel values are recomputed in float64, and the row is
accepted only if its k-th exact value exceeds what any non-candidate could reach given bf16's
error bound (for non-negative inputs a relative bound, `bf16_relative_error`); the other rows are
searched again in float32. The neighbours are those of the float32 search.

Differences from the reference code (platonic-rep's `cknna`, copied by the MSAE repo):
- the reference divides by sqrt(sim_KK·sim_LL) + 1e-6, which makes the score depend on the scale
  of the embeddings (tiny kernels are pulled towards 0); here the division is exact and an
  undefined estimate (a self-similarity ≤ 0) is returned as NaN instead of a misleading number;
- ties between neighbours (e.g. the all-zero rows of a very sparse code) are broken by
  `torch.topk`'s order in both, so such rows make the score depend on that order.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from msae.sae.kernels import Pattern

CHUNK_ELEMENTS = 1 << 24  # kernel entries per row chunk (64 MB in float32)
CANDIDATES_EXTRA = 10  # bf16 candidates kept per row beyond k, for the certificate
CSR_DENSITY = 0.015  # below this share of nonzeros a row chunk's kernel is a CSR product (CPU)


@dataclass
class KnnGraph:
    """The k nearest neighbours of each row (`idx`, [m, k]) and the kernel there (`vals`, float64)."""

    idx: torch.Tensor
    vals: torch.Tensor


def _chunk_rows(m: int, width: int) -> int:
    return max(1, CHUNK_ELEMENTS // max(1, width))


def sampled_kernel(left: torch.Tensor, right: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """⟨left_i, right_idx[i, t]⟩, [c, s], computed in the inputs' precision (float32 or float64)
    and returned in float64: the sampled product of msae's sparse kernels over the pattern `idx`
    (MKL or cuSPARSE SDDMM, ~7x faster on CPU than gathering the rows, and no float64 copy of the
    features; chunked gathers elsewhere)."""
    c, s = idx.shape
    dtype = torch.promote_types(torch.promote_types(left.dtype, right.dtype), torch.float32)
    sampled = left.device.type in ("cpu", "cuda") and c * s > 0
    rows = torch.arange(c, device=idx.device).repeat_interleave(s)
    pattern = Pattern(rows, idx.reshape(-1), c, right.shape[0], "hybrid" if sampled else "gather", rows_sorted=True)
    return pattern.sampled_dot(left.to(dtype), right.to(dtype)).view(c, s).double()


def kernel_at(feats: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Linear kernel values ⟨f_i, f_idx[i, t]⟩ in float64, [m, k]."""
    return sampled_kernel(feats, feats, idx)


@functools.cache
def native_bf16_cpu() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX): otherwise bf16 products are
    emulated and slower than float32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def bf16_relative_error(width: int) -> float:
    """Bound on |K^ − K| / K for a bf16 product of non-negative vectors of `width` entries: inputs
    and output rounded to bf16 (3·2⁻⁸) plus a float32 accumulation (width·2⁻²⁴), with margin."""
    return 1.05 * (3 * 2.0**-8 + width * 2.0**-24)


def _row_kernel(
    feats: torch.Tensor, start: int, stop: int, low: torch.Tensor | None, transposed: torch.Tensor | None
) -> torch.Tensor:
    """Kernel rows start..stop against every row, in float32 (or float64 for float64 input):
    from the bf16 copy `low` when given, as a CSR product with the contiguous `transposed`
    features when given (sparse codes), else a dense matmul."""
    if low is not None:
        return (low[start:stop] @ low.T).float()
    if transposed is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
            kern = torch.sparse.mm(feats[start:stop].to_sparse_csr(), transposed)
    else:
        kern = feats[start:stop] @ feats.T
    return kern.to(torch.float64) if feats.dtype == torch.float64 else kern.float()


def _top(kern: torch.Tensor, start: int, count: int) -> torch.return_types.topk:
    local = torch.arange(kern.shape[0], device=kern.device)
    kern[local, local + start] = -math.inf  # never its own neighbour
    return torch.topk(kern, count, dim=1)


def knn_graph(feats: torch.Tensor, k: int = 10, low_precision: bool | None = None) -> KnnGraph:
    """Inner-product k-NN of every row among the others (self excluded), built chunk by chunk.
    `low_precision`: search in certified bf16 (None: for non-negative float32 rows on a CPU with
    native bf16, unless they are sparse enough for a CSR product)."""
    m = feats.shape[0]
    if not 1 <= k < m:
        raise ValueError(f"CKNNA needs 1 <= k < m, got k={k}, m={m}")
    sparse_rows = feats.device.type == "cpu" and float((feats != 0).float().mean()) < CSR_DENSITY
    if low_precision is None:
        low_precision = (
            feats.device.type == "cpu" and native_bf16_cpu() and not sparse_rows and bool((feats >= 0).all())
        )
    idx = torch.empty(m, k, dtype=torch.int64, device=feats.device)
    vals = torch.empty(m, k, dtype=torch.float64, device=feats.device)
    low = feats.to(torch.bfloat16) if low_precision else None
    transposed = feats.T.contiguous() if sparse_rows and low is None else None
    count = min(m - 1, k + CANDIDATES_EXTRA) if low_precision else k
    # exact values of non-negative features lie within these factors of the computed ones
    accumulation = feats.shape[1] * torch.finfo(feats.dtype).eps if feats.is_floating_point() else 0.0
    bound = (1.0 + accumulation) / (1.0 - bf16_relative_error(feats.shape[1]))
    step = _chunk_rows(m, m)
    for start in range(0, m, step):
        stop = min(m, start + step)
        top = _top(_row_kernel(feats, start, stop, low, transposed), start, count)
        cand = top.indices
        precise = sampled_kernel(feats[start:stop], feats, cand)  # in the features' precision
        if low is None:
            idx[start:stop], vals[start:stop] = cand, precise
            continue
        best = precise.topk(k, dim=1)
        # a non-candidate's bf16 value is <= the last candidate's, so its true value <= that * bound
        certain = (best.values[:, -1] > top.values[:, -1].double().clamp_min(0) * bound) | (count == m - 1)
        idx[start:stop], vals[start:stop] = cand.gather(1, best.indices), best.values
        redo = torch.nonzero(~certain).reshape(-1)
        if len(redo):
            rows = start + redo
            kern = feats[rows] @ feats.T
            kern[torch.arange(len(rows), device=feats.device), rows] = -math.inf
            again = torch.topk(kern, k, dim=1).indices
            idx[rows], vals[rows] = again, sampled_kernel(feats[rows], feats, again)
    return KnnGraph(idx=idx, vals=vals)


def hsic_unbiased_masked(
    rows: torch.Tensor, cols: torch.Tensor, k_vals: torch.Tensor, l_vals: torch.Tensor, m: int
) -> float:
    """Unbiased HSIC of two m×m matrices that share one sparsity pattern (rows, cols), with
    zero diagonal (kNN masks never contain the diagonal):

        [tr(K̃L̃) + (1ᵀK̃1)(1ᵀL̃1)/((m−1)(m−2)) − 2·1ᵀK̃L̃1/(m−2)] / (m(m−3)).
    """
    if m < 4:
        raise ValueError(f"unbiased HSIC needs at least 4 samples, got {m}")
    k_vals, l_vals = k_vals.double(), l_vals.double()
    keys = rows * m + cols
    order = torch.argsort(keys)
    sorted_keys = keys[order]
    reverse = cols * m + rows
    pos = torch.searchsorted(sorted_keys, reverse).clamp_max(len(keys) - 1)
    has_reverse = sorted_keys[pos] == reverse if len(keys) else reverse.bool()
    l_transposed = torch.where(has_reverse, l_vals[order][pos], torch.zeros_like(l_vals))
    trace = float((k_vals * l_transposed).sum())
    row_sums_l = torch.zeros(m, dtype=torch.float64, device=l_vals.device).index_add_(0, rows, l_vals)
    cross = float((k_vals * row_sums_l[cols]).sum())
    total = trace + float(k_vals.sum()) * float(l_vals.sum()) / ((m - 1) * (m - 2)) - 2.0 * cross / (m - 2)
    return total / (m * (m - 3))


def _pattern(idx: torch.Tensor, keep: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    m, k = idx.shape
    rows = torch.arange(m, device=idx.device).unsqueeze(1).expand(m, k)
    if keep is None:
        return rows.reshape(-1), idx.reshape(-1)
    return rows[keep], idx[keep]


def cknna_from_graphs(feats_a: torch.Tensor, feats_b: torch.Tensor, graph_a: KnnGraph, graph_b: KnnGraph) -> float:
    """CKNNA from precomputed k-NN graphs (the raw-embedding graph is shared by every SAE path)."""
    m = feats_a.shape[0]
    rows_a, cols_a = _pattern(graph_a.idx)
    rows_b, cols_b = _pattern(graph_b.idx)
    sim_aa = hsic_unbiased_masked(rows_a, cols_a, graph_a.vals.reshape(-1), graph_a.vals.reshape(-1), m)
    sim_bb = hsic_unbiased_masked(rows_b, cols_b, graph_b.vals.reshape(-1), graph_b.vals.reshape(-1), m)
    shared = (graph_a.idx.unsqueeze(2) == graph_b.idx.unsqueeze(1)).any(dim=2)  # [m, k]
    rows, cols = _pattern(graph_a.idx, shared)
    b_at_a = kernel_at(feats_b, graph_a.idx)
    sim_ab = hsic_unbiased_masked(rows, cols, graph_a.vals[shared], b_at_a[shared], m)
    denom = sim_aa * sim_bb
    return sim_ab / math.sqrt(denom) if denom > 0 else float("nan")


def cknna(feats_a: torch.Tensor, feats_b: torch.Tensor, k: int = 10) -> float:
    """CKNNA of two representations of the same m samples ([m, d_a] and [m, d_b])."""
    if feats_a.shape[0] != feats_b.shape[0]:
        raise ValueError(f"CKNNA needs the same samples: {feats_a.shape[0]} vs {feats_b.shape[0]} rows")
    return cknna_from_graphs(feats_a, feats_b, knn_graph(feats_a, k), knn_graph(feats_b, k))
