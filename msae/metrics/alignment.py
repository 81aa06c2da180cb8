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
kernels are only ever built one square block at a time to find neighbours, each row keeping a
running list of candidates: memory is O(block² + m·k), never m×m. The kernel is symmetric, so
each block above the diagonal is computed once and feeds both its rows and its columns: half the
products of a search row by row, and each row merges only the entries above its current k-th
best (the diagonal blocks come first, so every row has a threshold before the others are read).
Kernel values at the neighbours are those of products in the features' precision (float32 at
least: ~1e-6 relative, far below CKNNA's own sampling error; the certified search recomputes
its candidates' values so) and are returned in float64.

Speed: the neighbour search ranks the rows by upper bounds of the kernel (`KernelBound`), cheaper
than the kernel, and certifies the result. SAE latents (non-negative) are rounded up to int8
multiples of each row's own scale (`quantize_up`, where the CPU has int8 dot products: ~1.8x bf16,
~7x float32), so the exact integer product of two codes times the two scales is never below the
kernel; rows of any sign (the raw embeddings) are rounded to bf16, whose product plus a slack
ε‖f_i‖‖f_j‖ bounds it (`round_bf16`). Every row ranks k + CANDIDATES_EXTRA candidates; the first
k + CANDIDATES_KEPT get their kernel values in the features' precision, and the row is settled if
its k-th value beats the next candidate's bound (no row outside those computed can exceed it);
else all its candidates are computed, and a row that still fails is searched again in float32. The
neighbours are those of the float32 search. Codes with fewer than CSR_DENSITY_INT8 nonzeros
(CSR_DENSITY where the int8 search does not apply) and at most CSR_MAX_ROW_ENTRIES per row
(narrow top-k) are multiplied as CSR products instead, exact in float32, built from the code's
own (index, values) entries when the caller has them (`RowEntries`).

Reuse: every graph keeps each row's candidates with exact values and a ceiling that no other row's
kernel value exceeds. A code that differs from a searched one on a few rows only (a progressive
top-k just below the widest samples' count of positive latents) is then searched again only on
those rows and on the rows whose ceiling the change may beat (`update_knn_graph`).

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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from msae.metrics.sparsity import latent_count
from msae.sae.kernels import Pattern, csr_matrix
from msae.topk import merge_top

CHUNK_ELEMENTS = 1 << 22  # kernel entries per block (16 MB in float32)
CANDIDATES_EXTRA = 20  # int8 candidates ranked per row beyond k, for the certificate
CANDIDATES_KEPT = 5  # ... of which this many have their exact values computed first and are kept
QUANT_LEVELS = 127  # int8 codes 0..127 (torch's int8 matmul multiplies int8 by int8)
# below this share of nonzeros the kernel blocks are CSR products (CPU): measured on 10,000 rows of
# n = 4,096, the int8 search wins from ~2% (k = 128: 0.57 vs 0.68 s; k = 64: 0.57 vs 0.46 s), a
# float32 one only from ~12% (k = 512: 2.37 vs 2.31 s)
CSR_DENSITY_INT8 = 0.02
CSR_DENSITY = 0.1
# ... and at most this many nonzeros per row: MKL's CSR x dense product of a 2048-row block slows
# from ~7 to ~2 GFMA/s beyond ~800 per row once the dense side outgrows the cache (n = 24,576),
# and at 512 it already only matches bf16 (benchmarks/evaluate.py at the paper's size)
CSR_MAX_ROW_ENTRIES = 512
UPDATE_MAX_SHARE = 1 / 16  # changed rows beyond which a new search costs less than an update


@dataclass
class KnnGraph:
    """Each row's neighbour candidates (`candidates`, [m, c], c >= k) with their kernel values
    (`values`, float64, descending), and `ceiling` [m]: a bound that the kernel value of every
    row outside a row's candidates cannot exceed. The k nearest neighbours are the first k
    candidates; the rest and the ceiling let a code that changes on a few rows be searched again
    only where the change can matter (`update_knn_graph`)."""

    candidates: torch.Tensor
    values: torch.Tensor
    ceiling: torch.Tensor
    k: int

    @property
    def idx(self) -> torch.Tensor:
        """The k nearest neighbours of each row, [m, k], nearest first."""
        return self.candidates[:, : self.k]

    @property
    def vals(self) -> torch.Tensor:
        """The kernel at those neighbours, float64 [m, k]."""
        return self.values[:, : self.k]

    @functools.cached_property
    def self_similarity(self) -> float:
        """HSIC_u of the masked kernel with itself (CKNNA's sim_KK), shared by every pairing of
        this graph (the raw embeddings' graph meets every SAE path)."""
        rows, cols = _pattern(self.idx)
        return hsic_unbiased_masked(rows, cols, self.vals.reshape(-1), self.vals.reshape(-1), self.candidates.shape[0])


def _block_size(m: int, csr: bool = False) -> int:
    """Rows (and columns) per square block of the kernel: at most CHUNK_ELEMENTS entries, a
    quarter of that for CSR products, whose dense side is then read from cache (measured on
    10,000 rows of n = 4,096, k = 64: 0.49 s per graph with 2,048-row blocks, 0.38 s with 1,024;
    dense and int8 products gain nothing)."""
    side = math.isqrt(CHUNK_ELEMENTS)
    return max(1, min(m, side // 2 if csr else side))


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


def _cpu_flags() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return []


@functools.cache
def native_int8_cpu() -> bool:
    """Whether this CPU has int8 dot products (AVX512-VNNI, AVX-VNNI or AMX) for torch's int8
    matmul: 800 GMAC/s on 2 cores where bf16 reaches 440 and float32 110; without them the
    certified search would not pay."""
    flags = _cpu_flags()
    return hasattr(torch, "_int_mm") and any(flag in flags for flag in ("avx512_vnni", "avx_vnni", "amx_int8"))


@functools.cache
def native_bf16_cpu() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX): otherwise bf16 products are
    emulated and slower than float32."""
    flags = _cpu_flags()
    return any(flag in flags for flag in ("avx512_bf16", "amx_bf16"))


class KernelBound(Protocol):
    """Upper bounds of the linear kernel, cheaper than the kernel: the certified search ranks rows
    by `kernel` and needs `upper` to bound the exact value, as the candidates' values are computed
    in the features' precision, of every entry ranked below a given one."""

    def kernel(self, left: slice, right: slice) -> torch.Tensor: ...

    def upper(self, values: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class Quantized:
    """Non-negative rows rounded up to int8 multiples of a per-row scale: scale_i · q_i ≥ f_i
    entry by entry, so scale_i · scale_j · (q_i · q_j), an exact integer product, bounds the
    kernel ⟨f_i, f_j⟩ from above."""

    q: torch.Tensor  # int8 [m, n'], 0..QUANT_LEVELS, n' >= n a multiple of 4: zero columns added
    scale: torch.Tensor  # [m], the features' precision (float32 at least)
    accumulation: float  # relative error of a kernel value computed in the features' precision

    def kernel(self, left: slice, right: slice) -> torch.Tensor:
        """The upper bounds of the kernel block [left, right], each rounded at most 3 times."""
        product = torch._int_mm(self.q[left], self.q[right].T).to(self.scale.dtype)
        return product.mul_(self.scale[left, None]).mul_(self.scale[None, right])

    @property
    def rounding(self) -> float:
        """Relative amount by which `kernel` may fall short of the exact bound (three roundings)."""
        return 4 * torch.finfo(self.scale.dtype).eps

    def upper(self, values: torch.Tensor) -> torch.Tensor:
        """Non-negative features: the computed value of a candidate may exceed its exact one by
        the accumulation's share, and `kernel` fall short of the bound by its rounding."""
        return values.double().clamp_min(0) * ((1.0 + self.accumulation) * (1.0 + self.rounding))


def quantize_up(feats: torch.Tensor) -> Quantized:
    """`feats` (non-negative) as int8 codes q ≤ QUANT_LEVELS and per-row scales with scale · q ≥
    feats exactly: q = ceil(f · (1 + 2⁻²²) / scale), whose margin outweighs the roundings of the
    product and of the reciprocal (each ≤ 2⁻²⁴), and scale = max / (QUANT_LEVELS − 0.01) keeps the
    largest code ≤ QUANT_LEVELS. Zero stays zero. Row chunks bound the float copy. The width is
    padded with zeros to a multiple of 4: torch's CPU int8 matmul returns garbage for a width of 1
    (found by the property test of the search), and zero columns leave every product unchanged."""
    dtype = torch.promote_types(feats.dtype, torch.float32)
    peak = feats.amax(dim=1).to(dtype) if feats.shape[1] else feats.new_zeros(feats.shape[0], dtype=dtype)
    scale = torch.where(peak > 0, peak / (QUANT_LEVELS - 0.01), torch.ones_like(peak))
    inverse = (1 + 2.0**-22) / scale
    width = feats.shape[1]
    q = torch.zeros(feats.shape[0], max(4, -(-width // 4) * 4), dtype=torch.int8, device=feats.device)
    step = max(1, CHUNK_ELEMENTS // max(1, width))
    for s in range(0, feats.shape[0], step):
        part = feats[s : s + step].to(dtype) * inverse[s : s + step, None]
        q[s : s + step, :width] = part.ceil_().clamp_(0, QUANT_LEVELS)
    return Quantized(q, scale, feats.shape[1] * torch.finfo(dtype).eps)


@dataclass(frozen=True)
class Rounded:
    """Rows of any sign rounded to bf16, with the slack that makes their product an upper bound:
    |bf16 product − ⟨f_i, f_j⟩| ≤ ε Σ_l |f_il f_jl| ≤ ε ‖f_i‖ ‖f_j‖ (Cauchy–Schwarz), where ε
    covers both inputs' rounding (2·2⁻⁸: bf16 keeps 8 significant bits), a float32 accumulation
    (n·2⁻²⁴), the output's rounding to bf16 (2⁻⁸), the candidates' values computed in float32
    (n·2⁻²⁴) and the float32 sum with the slack, with margin."""

    low: torch.Tensor  # bf16 [m, n]
    norm: torch.Tensor  # float32 [m], rounded up
    slack: float  # ε

    def kernel(self, left: slice, right: slice) -> torch.Tensor:
        product = (self.low[left] @ self.low[right].T).float()
        return product.addr_(self.norm[left], self.norm[right], alpha=self.slack)

    def upper(self, values: torch.Tensor) -> torch.Tensor:
        return values.double()


def round_bf16(feats: torch.Tensor) -> Rounded:
    """`feats` rounded to bf16, with the float64 norms of the rows rounded up to float32."""
    width = feats.shape[1]
    slack = 1.01 * (3 * 2.0**-8 + 2 * width * 2.0**-24 + 4 * 2.0**-24)
    norm = torch.linalg.vector_norm(feats.double(), dim=1).float() * (1 + 2.0**-22)
    return Rounded(feats.to(torch.bfloat16), norm, slack)


@dataclass(frozen=True)
class RowEntries:
    """Rows given by a fixed number of entries each (a top-k code): column `index` [m, k] and
    `values` [m, k], zeros allowed. The CSR blocks of a sparse kernel are built from them
    directly, without reading the [m, n] matrix."""

    index: torch.Tensor
    values: torch.Tensor

    @functools.cached_property
    def nonzeros(self) -> int:
        return int(torch.count_nonzero(self.values))


class _KernelBlocks:
    """Square blocks of the linear kernel FFᵀ, each computed once and read both ways (the kernel
    is symmetric), so the neighbour search costs half of the m×m product: upper bounds from
    `bound` when given, CSR products with contiguous transposed column blocks for
    sparse codes (built from their `entries` when given), else dense matmuls; returned in float32
    (float64 for float64 features)."""

    def __init__(
        self,
        feats: torch.Tensor,
        size: int,
        bound: KernelBound | None,
        sparse_rows: bool,
        entries: RowEntries | None,
    ) -> None:
        self.feats, self.bound, self.size = feats, bound, size
        self.starts = list(range(0, feats.shape[0], size))
        self.csr = sparse_rows and bound is None
        self.dtype = torch.promote_types(feats.dtype, torch.float32)
        self._left = (-1, feats)  # (row block, its left operand): none built yet
        self.entries = None
        if self.csr and entries is not None:  # CSR wants each row's columns ascending
            cols, order = entries.index.sort(dim=1)
            self.entries = RowEntries(cols, entries.values.gather(1, order).to(self.dtype))
            self.right = [self._transposed_from_entries(s) for s in self.starts]
            return
        blocks = [feats[s : s + size] for s in self.starts] if bound is None else []
        self.right = [b.T.contiguous() for b in blocks] if self.csr else blocks

    def _block_entries(self, start: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Columns and values of the entries of rows [start, start + size)."""
        assert self.entries is not None
        return self.entries.index[start : start + self.size], self.entries.values[start : start + self.size]

    def _transposed_from_entries(self, start: int) -> torch.Tensor:
        """Rows [start, start + size) transposed, [n, rows], scattered from their entries."""
        cols, vals = self._block_entries(start)
        rows = cols.shape[0]
        out = vals.new_zeros(self.feats.shape[1], rows)
        flat = cols * rows + torch.arange(rows, device=cols.device).unsqueeze(1)
        return out.view(-1).index_put_((flat.reshape(-1),), vals.reshape(-1)).view_as(out)

    def _rows(self, start: int) -> torch.Tensor:
        """The left operand of every block in the row of blocks starting at row `start`."""
        if self.csr and self.entries is not None:
            cols, vals = self._block_entries(start)
            rows, width = cols.shape
            crow = torch.arange(0, rows * width + 1, width, device=cols.device)
            return csr_matrix(crow, cols.reshape(-1), vals.reshape(-1), (rows, self.feats.shape[1]))
        if self.csr:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
                return self.feats[start : start + self.size].to_sparse_csr()
        return self.feats[start : start + self.size]

    def block(self, row_block: int, col_block: int) -> torch.Tensor:
        """Kernel entries of row block `row_block` against column block `col_block` (a row of
        blocks is read in order: its left operand is built once)."""
        if self.bound is not None:
            rows, cols = (slice(self.starts[b], self.starts[b] + self.size) for b in (row_block, col_block))
            return self.bound.kernel(rows, cols)
        if self._left[0] != row_block:
            self._left = (row_block, self._rows(self.starts[row_block]))
        left, right = self._left[1], self.right[col_block]
        if self.csr:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                kern = torch.sparse.mm(left, right)
        else:
            kern = left @ right.T
        return kern.to(self.dtype)


def _candidates(blocks: _KernelBlocks, count: int) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """(start, values, indices) of each row block once it is complete: the `count` largest kernel
    values of each row among the other rows ([rows, count], descending). The diagonal blocks come
    first and give every row a running top; block (I, J), J > I, then feeds rows I through its
    rows and rows J through its columns, and only its entries above a row's current `count`-th
    value are merged (a comparison and a few gathers instead of a top-k over the block: the
    threshold rises, so later blocks pass a handful per row; an entry equal to it is not merged).
    Row block I is complete once its own row of blocks is done, the blocks above it having fed it
    already."""
    tops: list[tuple[torch.Tensor, torch.Tensor]] = []
    for i, start in enumerate(blocks.starts):
        kern = blocks.block(i, i)
        kern.fill_diagonal_(-math.inf)  # never its own neighbour
        values, pos = kern.topk(min(count, kern.shape[1]), dim=1)
        tops.append((_pad_columns(values, count, -math.inf), _pad_columns(pos + start, count, 0)))
    for i, start in enumerate(blocks.starts):
        for j in range(i + 1, len(blocks.starts)):
            kern = blocks.block(i, j)
            rows, cols = torch.nonzero(kern > tops[i][0][:, -1:], as_tuple=True)
            tops[i] = _merge_above(*tops[i], rows, cols + blocks.starts[j], kern[rows, cols])
            rows, cols = torch.nonzero(kern > tops[j][0][:, -1], as_tuple=True)
            by_col = torch.argsort(cols, stable=True)  # grouped by the row they feed, rows ascending
            rows, cols = rows[by_col], cols[by_col]
            tops[j] = _merge_above(*tops[j], cols, rows + start, kern[rows, cols])
        yield start, *tops[i]


def _pad_columns(table: torch.Tensor, width: int, fill: float) -> torch.Tensor:
    """`table` [rows, c <= width] widened to `width` columns of `fill` (a block narrower than the
    candidate list)."""
    missing = width - table.shape[1]
    return table if missing == 0 else torch.cat([table, table.new_full((table.shape[0], missing), fill)], 1)


def _merge_above(
    top_val: torch.Tensor, top_idx: torch.Tensor, owner: torch.Tensor, other: torch.Tensor, values: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's running top ([rows, count], descending) merged with new entries (`owner` row,
    `other` row, kernel `values`), the entries grouped by owner: they are laid out in a padded
    table beside the running top, whose row-wise top-k is the merge."""
    if len(owner) == 0:
        return top_val, top_idx
    counts = torch.bincount(owner, minlength=top_val.shape[0])
    slot = torch.arange(len(owner), device=owner.device) - (counts.cumsum(0) - counts)[owner]
    width = int(counts.max())
    pad_val = top_val.new_full((top_val.shape[0], width), -math.inf).index_put_((owner, slot), values.to(top_val.dtype))
    pad_idx = top_idx.new_zeros((top_idx.shape[0], width)).index_put_((owner, slot), other)
    pool_val, pool_idx = torch.cat([top_val, pad_val], 1), torch.cat([top_idx, pad_idx], 1)
    merged, pos = pool_val.topk(top_val.shape[1], dim=1)
    return merged, pool_idx.gather(1, pos)


def _ranked(cand: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Candidates and their kernel values ordered by value, largest first."""
    values, order = values.sort(dim=1, descending=True)
    return cand.gather(1, order), values


def _kernel_rows(feats: torch.Tensor, rows: torch.Tensor) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(part, K[part, :]) for chunks `part` of `rows`, in the features' precision (float32 at
    least), each row's own entry -inf: at most CHUNK_ELEMENTS kernel entries at a time."""
    dtype = torch.promote_types(feats.dtype, torch.float32)
    step = max(1, CHUNK_ELEMENTS // feats.shape[0])
    for s in range(0, len(rows), step):
        part = rows[s : s + step]
        kern = feats[part].to(dtype) @ feats.to(dtype).T
        kern[torch.arange(len(part), device=feats.device), part] = -math.inf
        yield part, kern


def _search_rows(feats: torch.Tensor, rows: torch.Tensor, count: int) -> tuple[torch.Tensor, ...]:
    """(candidates, values, ceiling) of `rows` by a search in the features' precision: each row's
    `count` best other rows, largest first, whose last value bounds every other row's."""
    tops = [kern.topk(count, dim=1) for _, kern in _kernel_rows(feats, rows)]
    values = torch.cat([feats.new_empty(0, count, dtype=torch.float64), *(t.values.double() for t in tops)])
    cands = torch.cat([rows.new_empty(0, count), *(t.indices for t in tops)])
    return cands, values, _ceiling(values[:, -1], count, feats.shape[0])


def _ceiling(last: torch.Tensor, count: int, m: int) -> torch.Tensor:
    """The bound on non-candidates' values: -inf when every other row is a candidate."""
    return last.double() if count < m - 1 else torch.full_like(last, -math.inf, dtype=torch.float64)


def knn_graph(
    feats: torch.Tensor, k: int = 10, certified: bool | None = None, entries: RowEntries | None = None
) -> KnnGraph:
    """Inner-product k-NN of every row among the others (self excluded), built block by block.
    `certified`: rank by upper bounds of the kernel, int8 for non-negative rows and bf16 for
    others, and certify (None: where the CPU multiplies the one needed natively, unless the rows
    are sparse enough for a CSR product). `entries`: the rows of `feats` as a top-k code's entries,
    when they are one (their CSR blocks are then built from them)."""
    m = feats.shape[0]
    if not 1 <= k < m:
        raise ValueError(f"CKNNA needs 1 <= k < m, got k={k}, m={m}")
    cpu = feats.device.type == "cpu"
    signs = entries.values if entries is not None else feats  # a code's other entries are zeros
    non_negative = signs.numel() == 0 or bool(signs.min() >= 0)
    native = cpu and (native_int8_cpu() if non_negative else native_bf16_cpu())
    nonzeros = entries.nonzeros if entries is not None else int(latent_count(feats).sum())
    int8_alternative = non_negative and (native if certified is None else certified)
    density = CSR_DENSITY_INT8 if int8_alternative else CSR_DENSITY
    sparse_rows = cpu and nonzeros < density * feats.numel() and nonzeros <= CSR_MAX_ROW_ENTRIES * m
    if certified is None:
        certified = native and not sparse_rows
    count = min(m - 1, k + CANDIDATES_EXTRA) if certified else k
    kept = min(count, k + CANDIDATES_KEPT) if certified else k
    graph = KnnGraph(
        candidates=torch.empty(m, kept, dtype=torch.int64, device=feats.device),
        values=torch.empty(m, kept, dtype=torch.float64, device=feats.device),
        ceiling=torch.empty(m, dtype=torch.float64, device=feats.device),
        k=k,
    )
    bound = (quantize_up(feats) if non_negative else round_bf16(feats)) if certified else None
    blocks = _KernelBlocks(feats, _block_size(m, csr=sparse_rows and bound is None), bound, sparse_rows, entries)
    for start, top_vals, cand in _candidates(blocks, count):
        rows = slice(start, start + len(cand))
        if bound is None:  # products in the features' precision: their values are the kernel's
            graph.candidates[rows], graph.values[rows] = cand, top_vals.double()
            graph.ceiling[rows] = _ceiling(top_vals[:, -1].double(), count, m)
            continue
        certificate = _certify(feats, start, cand, bound.upper(top_vals), k, kept)
        graph.candidates[rows], graph.values[rows], graph.ceiling[rows], unsure = certificate
        redo = start + unsure
        if len(redo):
            graph.candidates[redo], graph.values[redo], graph.ceiling[redo] = _search_rows(feats, redo, kept)
    return graph


def _certify(
    feats: torch.Tensor, start: int, cand: torch.Tensor, bounds: torch.Tensor, k: int, kept: int
) -> tuple[torch.Tensor, ...]:
    """(candidates, values, ceiling, unsure) of the rows from `start` ranked by upper bounds of the
    kernel (`cand` [rows, count] with `bounds`, descending): the first `kept` candidates' exact
    values, the others bounded by the next candidate's bound; a row whose k-th exact value does not
    beat that bound has all its candidates' values computed (keeping the best `kept`, its ceiling
    also bounding those it drops), and if it still does not beat its last bound it is `unsure`
    (indices from `start`), to be searched again."""
    m, count = feats.shape[0], cand.shape[1]
    rows = slice(start, start + len(cand))
    top, values = _ranked(cand[:, :kept], sampled_kernel(feats[rows], feats, cand[:, :kept]))
    ceiling = bounds[:, kept] if kept < count else _ceiling(bounds[:, -1], count, m)
    unsure = torch.nonzero(values[:, k - 1] <= ceiling).reshape(-1)
    if kept < count and len(unsure):
        wide, wide_values = _ranked(cand[unsure], sampled_kernel(feats[start + unsure], feats, cand[unsure]))
        wide_ceiling = torch.maximum(wide_values[:, kept], _ceiling(bounds[unsure, -1], count, m))
        top[unsure], values[unsure], ceiling[unsure] = wide[:, :kept], wide_values[:, :kept], wide_ceiling
        unsure = unsure[wide_values[:, k - 1] <= wide_ceiling]
    return top, values, ceiling, unsure


def update_knn_graph(
    graph: KnnGraph, feats: torch.Tensor, changed: torch.Tensor, entries: RowEntries | None = None
) -> KnnGraph:
    """The k-NN graph of `feats`, features equal to those `graph` was built on except at the rows
    `changed` (indices): a row outside them keeps its kernel with every unchanged row, so its
    neighbours are among its unchanged candidates and the changed rows whenever the k-th best of
    those exceeds its ceiling; the changed rows and the rows that fail this are searched again
    (the changed rows' kernel rows computed once, for both). Beyond UPDATE_MAX_SHARE of the rows
    changed, a new search is cheaper (`entries` as for `knn_graph`)."""
    m, k, count = feats.shape[0], graph.k, graph.candidates.shape[1]
    if len(changed) == 0:
        return graph
    if len(changed) > UPDATE_MAX_SHARE * m:
        return knn_graph(feats, k, entries=entries)
    # each row's running top `count` as a column of a [count, m] table (merge_top's layout): its
    # unchanged candidates, merged with the changed rows' kernel columns, which the changed rows'
    # own searches share (the kernel is symmetric)
    top_val = graph.values.masked_fill(torch.isin(graph.candidates, changed), -math.inf).T
    top_idx = graph.candidates.T
    own = []
    for part, kern in _kernel_rows(feats, changed):
        top_val, top_idx = merge_top(top_val, top_idx, kern, part, count)
        own.append(kern.topk(count, dim=1))
    values = top_val.T.contiguous()
    updated = KnnGraph(top_idx.T.contiguous(), values, torch.maximum(graph.ceiling, values[:, -1]), k)
    own_values = torch.cat([t.values for t in own]).double()
    updated.candidates[changed], updated.values[changed] = torch.cat([t.indices for t in own]), own_values
    updated.ceiling[changed] = _ceiling(own_values[:, -1], count, m)
    uncertain = values[:, k - 1] <= graph.ceiling
    uncertain[changed] = False
    redo = torch.nonzero(uncertain).reshape(-1)
    updated.candidates[redo], updated.values[redo], updated.ceiling[redo] = _search_rows(feats, redo, count)
    return updated


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


def cknna_from_graphs(graph_a: KnnGraph, graph_b: KnnGraph) -> float:
    """CKNNA from the k-NN graphs of two representations of the same rows (the raw-embedding
    graph is shared by every SAE path): the kernels are only read at neighbours, whose values the
    graphs hold."""
    m = graph_a.candidates.shape[0]
    sim_aa, sim_bb = graph_a.self_similarity, graph_b.self_similarity
    # the mutual neighbours: B's kernel there is among B's own neighbour values, no product needed
    match = graph_a.idx.unsqueeze(2) == graph_b.idx.unsqueeze(1)  # [m, k, k], one match at most
    shared = match.any(dim=2)
    rows, cols = _pattern(graph_a.idx, shared)
    b_at_a = graph_b.vals.gather(1, match.to(torch.uint8).argmax(dim=2))
    sim_ab = hsic_unbiased_masked(rows, cols, graph_a.vals[shared], b_at_a[shared], m)
    denom = sim_aa * sim_bb
    return sim_ab / math.sqrt(denom) if denom > 0 else float("nan")


def cknna(feats_a: torch.Tensor, feats_b: torch.Tensor, k: int = 10) -> float:
    """CKNNA of two representations of the same m samples ([m, d_a] and [m, d_b])."""
    if feats_a.shape[0] != feats_b.shape[0]:
        raise ValueError(f"CKNNA needs the same samples: {feats_a.shape[0]} vs {feats_b.shape[0]} rows")
    return cknna_from_graphs(knn_graph(feats_a, k), knn_graph(feats_b, k))
