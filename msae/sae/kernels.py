"""Sparse-dense products at k*d per sample: the kernels under msae's sparse training and evaluation.

A ragged `Pattern` (row, latent) describes the active entries of a [rows, n] matrix Z. Decoding
Z W is a sparse-dense product; its backward needs <dL/dZW, W[latent]> at each active entry (a
sampled product) and Z^T G for the weight (a transposed sparse product), so only the active rows
of W receive any gradient.

Products run on one of three backends: "csr" (torch.sparse CSR: MKL on CPU, cuSPARSE on CUDA),
"gather" (embedding_bag over the row-major pattern for Z W and over the latent-major one for
Z^T G, gathered dot products for the value gradients) and "hybrid" (gather's products with the
CSR sampled product for the dots: MKL's beats gathered dots on CPU, and reads a decoder too large
for the cache one tile at a time). `default_backend` picks what measured fastest
(benchmarks/step.py on CPU, benchmarks/gpu.sh on CUDA).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

BACKENDS = ("csr", "gather", "hybrid")
GATHER_CHUNK = 1 << 18  # entries per gathered block in the "gather" sampled product
# MKL's sampled product reads a `right` row per entry, at random: once `right` outgrows the cache
# (a 75 MB decoder at n = 24,576, d = 768) it runs ~4x slower per entry than at n = 4,096. Above
# three of these, the CPU product runs tile by tile of `right`, the entries regrouped by tile
# (a stable sort of small keys): 2.2-2.8x faster at 75 MB, even at 32 MB, slower at 18 MB. Only
# when each row of `right` serves many entries: a few reads per row (CKNNA's sampled kernel)
# have no reuse for the cache to keep, and tiling them measured 5% slower.
SAMPLED_TILE_BYTES = 8 << 20
SAMPLED_TILE_MIN_USES = 16


def default_backend(device: torch.device, dtype: torch.dtype = torch.float32) -> str:
    """What measured fastest: MKL's sampled product with embedding_bag gathers on CPU; cuSPARSE
    CSR on CUDA in fp32 (it has no bf16 sampled product), embedding_bag gathers in bf16."""
    if device.type == "cpu":
        return "hybrid"
    if device.type == "cuda" and dtype in (torch.float32, torch.float64):
        return "csr"
    return "gather"


def pointers_of(index: torch.Tensor, n: int) -> torch.Tensor:
    """CSR pointers [n + 1] of entries grouped by `index` (values in [0, n)). Counted with
    index_add_ rather than bincount, which reads the maximum back to the host on CUDA: no sync
    on the training step."""
    counts = torch.zeros(n, dtype=torch.int64, device=index.device).index_add_(0, index, torch.ones_like(index))
    pointers = counts.new_zeros(n + 1)
    torch.cumsum(counts, 0, out=pointers[1:])
    return pointers


def csr_matrix(
    pointers: torch.Tensor, index: torch.Tensor, values: torch.Tensor, shape: tuple[int, int]
) -> torch.Tensor:
    """A CSR matrix from row pointers, column indices (ascending within a row) and values, with
    int32 indices where they fit (~25% faster with MKL) and no invariant check (the callers build
    valid ones)."""
    dtype = torch.int32 if max(index.numel(), *shape) < 2**31 - 1 else torch.int64
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
        return torch.sparse_csr_tensor(pointers.to(dtype), index.to(dtype), values, shape, check_invariants=False)


def column_order(
    rows: torch.Tensor, cols: torch.Tensor, n_rows: int, n_cols: int, rows_sorted: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """(latent pointers [n_cols + 1], permutation that lists the entries latent by latent with
    rows ascending). Entries already in row order (`rows_sorted`) need only a stable sort of the
    latents (measured 3x faster on CPU than a counting sort over a dense occupancy and 1.4x than
    a sort of combined keys), as the narrowest integer that holds them (int16 sorts 4.2 M keys in
    47 ms on 2 CPU cores, int64 in 102 ms); entries in any order sort by (latent, row)."""
    pointers = pointers_of(cols, n_cols)
    if rows_sorted:
        return pointers, torch.sort(cols.to(narrowest_int(n_cols)), stable=True).indices
    return pointers, torch.argsort(cols * n_rows + rows)


def narrowest_int(bound: int) -> torch.dtype:
    """The narrowest signed integer dtype holding every value in [0, bound)."""
    return next(t for t in (torch.int16, torch.int32, torch.int64) if bound - 1 <= torch.iinfo(t).max)


class Pattern:
    """The active entries of a [n_rows, n_cols] sparse matrix, as int64 `rows` and `cols` [N] in
    any order (values passed alongside use the same order). Builds, once each, the row-major and
    the latent-major layouts the products need; `rows_sorted` says the entries already come
    grouped by row (latents within a row in any order); `col_order` supplies the latent-major
    order when it is known (it is shared by patterns whose rows refine one another)."""

    def __init__(
        self,
        rows: torch.Tensor,
        cols: torch.Tensor,
        n_rows: int,
        n_cols: int,
        backend: str,
        rows_sorted: bool = False,
        col_order: Callable[[], tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown sparse backend {backend!r}; choose from {BACKENDS}")
        self.rows, self.cols, self.n_rows, self.n_cols, self.backend = rows, cols, n_rows, n_cols, backend
        self.rows_sorted = rows_sorted
        self._col_order = col_order  # not a lambda over self: a reference cycle would hold the tensors
        self._by_row: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None = None
        self._by_col: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def by_row(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(row pointers, latents, permutation into row-major order or None if already)."""
        if self._by_row is None:
            perm = None if self.rows_sorted else torch.argsort(self.rows * self.n_cols + self.cols)
            cols = self.cols if perm is None else self.cols.take(perm)
            rows = self.rows if perm is None else self.rows.take(perm)
            self._by_row = (pointers_of(rows, self.n_rows), cols, perm)
        return self._by_row

    def by_col(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(latent pointers, rows, permutation into latent-major order) of the transpose."""
        if self._by_col is None:
            if self._col_order is not None:
                pointers, perm = self._col_order()
            else:
                pointers, perm = column_order(self.rows, self.cols, self.n_rows, self.n_cols, self.rows_sorted)
            self._by_col = (pointers, self.rows.take(perm), perm)
        return self._by_col

    def mm(self, values: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        """Z @ dense -> [n_rows, d], where Z holds `values` at the pattern."""
        pointers, cols, perm = self.by_row()
        ordered = values if perm is None else values.take(perm)
        if self.backend == "csr":
            return csr_matrix(pointers, cols, ordered, (self.n_rows, self.n_cols)) @ dense
        return F.embedding_bag(cols, dense, pointers[:-1], mode="sum", per_sample_weights=ordered)

    def t_mm(self, values: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        """Z^T @ dense -> [n_cols, d]: each latent sums value * dense[row] over its entries, a
        gather of `dense` rows in latent-major order (no [N, d] intermediate)."""
        pointers, rows, perm = self.by_col()
        if self.backend == "csr":
            return csr_matrix(pointers, rows, values.take(perm), (self.n_cols, self.n_rows)) @ dense
        return F.embedding_bag(rows, dense, pointers[:-1], mode="sum", per_sample_weights=values.take(perm))

    def sampled_dot(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """<left[row], right[col]> for every active entry -> [N] (left [n_rows, d], right [n_cols, d])."""
        if self.backend in ("csr", "hybrid"):
            pointers, cols, perm = self.by_row()
            if (
                right.device.type == "cpu"
                and right.numel() * right.element_size() > 3 * SAMPLED_TILE_BYTES
                and cols.numel() >= SAMPLED_TILE_MIN_USES * right.shape[0]
            ):
                tile = max(1, SAMPLED_TILE_BYTES // max(1, right.shape[1] * right.element_size()))
                dots = self._tiled_sampled_dot(left, right, cols, perm, tile)
            else:
                mask = csr_matrix(pointers, cols, left.new_zeros(cols.shape), (self.n_rows, self.n_cols))
                dots = torch.sparse.sampled_addmm(mask, left, right.T, beta=0.0).values()
            return dots if perm is None else torch.empty_like(dots).index_copy_(0, perm, dots)
        out = torch.empty(self.rows.shape, dtype=left.dtype, device=left.device)
        for start in range(0, out.numel(), GATHER_CHUNK):  # bounded [chunk, d] intermediates
            part = slice(start, start + GATHER_CHUNK)
            out[part] = (left[self.rows[part]] * right[self.cols[part]]).sum(-1)
        return out

    def _tiled_sampled_dot(
        self, left: torch.Tensor, right: torch.Tensor, cols: torch.Tensor, perm: torch.Tensor | None, tile: int
    ) -> torch.Tensor:
        """The sampled product in row-major entry order, one tile of `tile` rows of `right` at a
        time (so it stays in cache): a stable sort by tile keeps each tile's entries row-major."""
        rows = self.rows if perm is None else self.rows.take(perm)
        tiles = -(-self.n_cols // tile)
        key, order = torch.sort((cols // tile).to(narrowest_int(tiles)), stable=True)
        bounds = torch.searchsorted(key, torch.arange(tiles + 1, dtype=key.dtype, device=key.device)).tolist()
        out = torch.empty(cols.shape, dtype=left.dtype, device=left.device)
        for t, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
            if lo == hi:
                continue
            part = order[lo:hi]
            block = right[t * tile : (t + 1) * tile]
            mask = csr_matrix(
                pointers_of(rows.take(part), self.n_rows),
                cols.take(part) - t * tile,
                left.new_zeros(hi - lo),
                (self.n_rows, block.shape[0]),
            )
            out[part] = torch.sparse.sampled_addmm(mask, left, block.T, beta=0.0).values()
        return out


class _SparseDecode(torch.autograd.Function):
    """out = Z W for Z given by (values, pattern); backward touches only the active rows of W."""

    @staticmethod
    def forward(ctx: Any, values: torch.Tensor, weight: torch.Tensor, pattern: Pattern) -> torch.Tensor:
        ctx.save_for_backward(values, weight)
        ctx.pattern = pattern
        return pattern.mm(values, weight)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):  # type: ignore[override]
        values, weight = ctx.saved_tensors
        pattern: Pattern = ctx.pattern
        grad = grad.contiguous()
        grad_values = pattern.sampled_dot(grad, weight) if ctx.needs_input_grad[0] else None
        grad_weight = pattern.t_mm(values, grad) if ctx.needs_input_grad[1] else None
        return grad_values, grad_weight, None


def sparse_decode(values: torch.Tensor, weight: torch.Tensor, pattern: Pattern) -> torch.Tensor:
    """sum_j v_j W[latent_j] per pattern row: [N] values, [n, d] weight -> [n_rows, d]."""
    return _SparseDecode.apply(values, weight, pattern)


__all__ = ["BACKENDS", "Pattern", "column_order", "csr_matrix", "default_backend", "sparse_decode"]
