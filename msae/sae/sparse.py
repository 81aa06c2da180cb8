"""Sparse training kernels: TopK, BatchTopK and one-pass k-nested Matryoshka at k*d per sample.

The dense objective (`SparseAutoencoder.objective`) multiplies a [B, n] activation that is almost
all zeros by the decoder, once per Matryoshka level, forward and backward. Here only what is
active is touched:

- Selection ranks the pre-activations once (per sample, or over the whole batch for BatchTopK)
  and cuts the ranking into bands [k_{i-1}, k_i): band i holds the latents that level i adds to
  level i-1. A ragged `Pattern` (row, latent) describes the active entries of every band.
- Decoding a band is a sparse-dense product (k*d per sample, not n*d). Every band is decoded
  once, as one product over stacked rows (band, sample), and the level reconstructions are the
  running sum over bands, so all levels together cost one decode of the widest sparse level.
  Backward: the gradient of an active value is <dL/dx_hat, W_dec[latent]> (a sampled product)
  and the decoder gradient is the transposed sparse product, so only active rows receive any.
- Encoder (`_SparseEncode`): the forward matmul is dense (the top-k needs every pre-activation),
  but its weight gradient x^T G has only k nonzeros per row of G and is one transposed sparse
  product too.
- A band that covers a large share of the latents (the paper's last level k = n is plain ReLU
  over every latent, "all remaining positive latents") is decoded as a dense masked matmul, as
  the dense code does; such a band is inherently n*d per sample, and its presence makes the
  encoder gradient dense as well, so it then runs through ordinary autograd.

Loss and gradients equal the dense computation to float tolerance (tests/test_sae_sparse.py).
Products run on one of three backends: "csr" (torch.sparse CSR: MKL on CPU, cuSPARSE on CUDA),
"gather" (embedding_bag over the row-major pattern for Z W and over the latent-major one for
Z^T G, gathered dot products for the value gradients) and "hybrid" (gather's products with the
CSR sampled product for the dots: MKL's beats gathered dots on CPU). `default_backend` picks what
measured fastest (benchmarks/step.py on CPU, benchmarks/gpu.sh on CUDA).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from msae.sae import losses

warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")

BACKENDS = ("csr", "gather", "hybrid")
ENCODER_BACKWARDS = ("sparse", "dense")
# A band whose mean count per row exceeds this share of the latents is decoded densely (a masked
# matmul), otherwise by gathers. The break-even depends on how much faster the device's GEMM is
# than its gathers: on 2 CPU cores ~n/8; on an H200 ~n/10 in fp32 and ~n/200 in bf16, whose
# tensor cores make dense bands nearly free (benchmarks/step.py, benchmarks/gpu.sh).
DENSE_BAND_FRACTION = 0.125
DENSE_BAND_FRACTION_CUDA = {torch.float32: 0.1, torch.float64: 0.1}
DENSE_BAND_FRACTION_CUDA_LOW_PRECISION = 0.005
COUNTING_SORT_DENSITY = 64  # counting sort once entries >= rows*latents/64, else a comparison sort
GATHER_CHUNK = 1 << 18  # entries per gathered block in the "gather" sampled product


def default_backend(device: torch.device, dtype: torch.dtype = torch.float32) -> str:
    """What measured fastest: MKL's sampled product with embedding_bag gathers on CPU; cuSPARSE
    CSR on CUDA in fp32 (it has no bf16 sampled product), embedding_bag gathers in bf16."""
    if device.type == "cpu":
        return "hybrid"
    if device.type == "cuda" and dtype in (torch.float32, torch.float64):
        return "csr"
    return "gather"


def default_dense_fraction(device: torch.device, dtype: torch.dtype = torch.float32) -> float:
    if device.type != "cuda":
        return DENSE_BAND_FRACTION
    return DENSE_BAND_FRACTION_CUDA.get(dtype, DENSE_BAND_FRACTION_CUDA_LOW_PRECISION)


def column_order(
    rows: torch.Tensor, cols: torch.Tensor, n_rows: int, n_cols: int, unique: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """(latent pointers [n_cols + 1], permutation that lists the entries latent by latent with
    rows ascending). With `unique` (row, latent) pairs and many entries this is a counting sort
    over a dense [n_rows, n_cols] occupancy (a cumulative sum, no comparison sort)."""
    pointers = torch.zeros(n_cols + 1, dtype=torch.int64, device=cols.device)
    torch.cumsum(torch.bincount(cols, minlength=n_cols), 0, out=pointers[1:])
    if unique and cols.numel() * COUNTING_SORT_DENSITY >= n_rows * n_cols:
        occupied = torch.zeros(n_rows, n_cols, dtype=torch.int32, device=cols.device)
        occupied.index_put_((rows, cols), torch.ones_like(cols, dtype=torch.int32))
        before = occupied.cumsum_(0)[rows, cols] - 1  # earlier rows holding the same latent
        position = pointers[cols] + before
        perm = torch.empty_like(position).scatter_(0, position, torch.arange(cols.numel(), device=cols.device))
    else:
        perm = torch.argsort(cols * n_rows + rows)
    return pointers, perm


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
        self._col_order = col_order or (lambda: column_order(self.rows, self.cols, self.n_rows, self.n_cols))
        self._by_row: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None = None
        self._by_col: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def _index_dtype(self) -> torch.dtype:
        # int32 CSR indices are ~25% faster with MKL; int64 beyond 2^31 entries.
        return torch.int32 if max(self.rows.numel(), self.n_rows, self.n_cols) < 2**31 - 1 else torch.int64

    def by_row(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(row pointers, latents, permutation into row-major order or None if already)."""
        if self._by_row is None:
            perm = None if self.rows_sorted else torch.argsort(self.rows * self.n_cols + self.cols)
            cols = self.cols if perm is None else self.cols[perm]
            rows = self.rows if perm is None else self.rows[perm]
            pointers = torch.zeros(self.n_rows + 1, dtype=torch.int64, device=rows.device)
            torch.cumsum(torch.bincount(rows, minlength=self.n_rows), 0, out=pointers[1:])
            self._by_row = (pointers, cols, perm)
        return self._by_row

    def by_col(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(latent pointers, rows, permutation into latent-major order) of the transpose."""
        if self._by_col is None:
            pointers, perm = self._col_order()
            self._by_col = (pointers, self.rows[perm], perm)
        return self._by_col

    def _csr(
        self, pointers: torch.Tensor, index: torch.Tensor, values: torch.Tensor, shape: tuple[int, int]
    ) -> torch.Tensor:
        dtype = self._index_dtype()
        return torch.sparse_csr_tensor(pointers.to(dtype), index.to(dtype), values, shape, check_invariants=False)

    def mm(self, values: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        """Z @ dense -> [n_rows, d], where Z holds `values` at the pattern."""
        pointers, cols, perm = self.by_row()
        ordered = values if perm is None else values[perm]
        if self.backend == "csr":
            return self._csr(pointers, cols, ordered, (self.n_rows, self.n_cols)) @ dense
        return F.embedding_bag(cols, dense, pointers[:-1], mode="sum", per_sample_weights=ordered)

    def t_mm(self, values: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        """Z^T @ dense -> [n_cols, d]: each latent sums value * dense[row] over its entries, a
        gather of `dense` rows in latent-major order (no [N, d] intermediate)."""
        pointers, rows, perm = self.by_col()
        if self.backend == "csr":
            return self._csr(pointers, rows, values[perm], (self.n_cols, self.n_rows)) @ dense
        return F.embedding_bag(rows, dense, pointers[:-1], mode="sum", per_sample_weights=values[perm])

    def sampled_dot(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """<left[row], right[col]> for every active entry -> [N] (left [n_rows, d], right [n_cols, d])."""
        if self.backend in ("csr", "hybrid"):
            pointers, cols, perm = self.by_row()
            mask = self._csr(pointers, cols, left.new_zeros(cols.shape), (self.n_rows, self.n_cols))
            dots = torch.sparse.sampled_addmm(mask, left, right.T, beta=0.0).values()
            return dots if perm is None else torch.empty_like(dots).index_copy_(0, perm, dots)
        out = torch.empty(self.rows.shape, dtype=left.dtype, device=left.device)
        for start in range(0, out.numel(), GATHER_CHUNK):  # bounded [chunk, d] intermediates
            part = slice(start, start + GATHER_CHUNK)
            out[part] = (left[self.rows[part]] * right[self.cols[part]]).sum(-1)
        return out

    def scatter_dense(self, values: torch.Tensor) -> torch.Tensor:
        """The [n_rows, n_cols] dense matrix (reference path and dense encoder gradient)."""
        out = torch.zeros(self.n_rows, self.n_cols, dtype=values.dtype, device=values.device)
        return out.index_put_((self.rows, self.cols), values, accumulate=True)


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


class _SparseEncode(torch.autograd.Function):
    """values = ReLU((x W + c)[selected]) with the selection made inside from the dense
    pre-activations. Backward: G has one nonzero per selected entry, so dL/dW = x^T G and
    dL/dc = column sums of G are sparse products ("sparse"), or a dense matmul ("dense")."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w_enc: torch.Tensor, c: torch.Tensor, plan: _Plan, encoder_backward: str):
        with torch.no_grad():
            a = torch.addmm(c, x, w_enc)  # the bias rides in the GEMM's epilogue
            selection = plan.select(a)
        pre = selection.pre_values
        ctx.save_for_backward(x, w_enc, pre)
        ctx.selection, ctx.encoder_backward = selection, encoder_backward
        values = pre * (pre > 0).to(pre.dtype)
        return values, selection

    @staticmethod
    def backward(ctx: Any, grad_values: torch.Tensor, _unused: Any):  # type: ignore[override]
        x, w_enc, pre = ctx.saved_tensors
        sample: Pattern = ctx.selection.by_sample
        g = grad_values * (pre > 0).to(grad_values.dtype)
        grad_x = grad_w = grad_c = None
        if ctx.encoder_backward == "dense":
            dense = sample.scatter_dense(g)
            grad_w = x.T @ dense if ctx.needs_input_grad[1] else None
            grad_c = dense.sum(0) if ctx.needs_input_grad[2] else None
            grad_x = dense @ w_enc.T if ctx.needs_input_grad[0] else None
            return grad_x, grad_w, grad_c, None, None
        if ctx.needs_input_grad[1]:
            grad_w = sample.t_mm(g, x).T
        if ctx.needs_input_grad[2]:
            grad_c = torch.zeros(w_enc.shape[1], dtype=g.dtype, device=g.device).index_add_(0, sample.cols, g)
        if ctx.needs_input_grad[0]:
            grad_x = sample.mm(g, w_enc.T.contiguous())
        return grad_x, grad_w, grad_c, None, None


@dataclass
class Selection:
    """The sparse bands of one batch, entries grouped by sample and, within a sample, by band:
    `pre_values` [N] their pre-activations, `by_sample` the (sample, latent) pattern and
    `by_band` the same entries on rows (sample b, band slot s) -> b*S + s, so that one product
    decodes every sparse band of every sample."""

    pre_values: torch.Tensor
    by_sample: Pattern
    by_band: Pattern
    slots: int  # S: number of sparse bands


def nested_rank(view: torch.Tensor, counts: Sequence[int]) -> torch.Tensor:
    """Indices [R, counts[-1]] of each row's largest entries, arranged so that for every c in the
    ascending `counts` the first c columns are the row's top c (ties broken as topk does). One
    unsorted top-k, then each smaller level is a top-k of the previous level's values moved to
    the front: ~2x cheaper than a sorted top-k of the widest count."""
    values, idx = view.topk(counts[-1], dim=1, sorted=False)
    wider = counts[-1]
    for c in reversed(counts[:-1]):
        head_v, head_i = values[:, :wider], idx[:, :wider]
        top = torch.zeros_like(head_i, dtype=torch.bool).scatter_(1, head_v.topk(c, dim=1, sorted=False).indices, True)
        # stable partition by cumulative counts: the top c to the front, the rest after them
        dest = torch.where(top, top.cumsum(1) - 1, c + (~top).cumsum(1) - 1)
        values[:, :wider] = torch.empty_like(head_v).scatter_(1, dest, head_v)
        idx[:, :wider] = torch.empty_like(head_i).scatter_(1, dest, head_i)
        wider = c
    return idx


@dataclass
class _Plan:
    """How a batch is cut into bands: the per-row (per-batch for BatchTopK) count of each level,
    which bands are decoded sparsely, and the backend."""

    counts: list[int]  # kept entries per level in the ranked view (k per sample, or k*B)
    width: int  # entries of one ranked row of the view (n, or B*n)
    over_batch: bool
    batch: int
    n: int
    sparse_bands: list[int]  # indices of the bands decoded through the sparse path
    backend: str
    ranked: torch.Tensor | None = None  # filled by select: nested_rank of the view

    def band_range(self, band: int) -> tuple[int, int]:
        return (self.counts[band - 1] if band else 0), self.counts[band]

    def select(self, a: torch.Tensor) -> Selection:
        """Rank `a` ([B, n], no grad) and gather the sparse bands' entries."""
        b, n = self.batch, self.n
        view = a.reshape(1, -1) if self.over_batch else a
        partial = [c for c in self.counts if c < self.width]
        self.ranked = nested_rank(view, partial) if partial else None
        slots = len(self.sparse_bands)
        ranges = [self.band_range(i) for i in self.sparse_bands]
        if not ranges:
            empty = torch.zeros(0, dtype=torch.int64, device=a.device)
            pattern = Pattern(empty, empty, b, n, self.backend, rows_sorted=True)
            return Selection(a.new_zeros(0), pattern, pattern, 0)
        assert self.ranked is not None
        if all(lo == hi_prev for (lo, _), (_, hi_prev) in zip(ranges[1:], ranges)) and ranges[0][0] == 0:
            chosen = self.ranked[:, : ranges[-1][1]]  # the usual case: the sparse bands are a prefix
        else:
            chosen = self.ranked[:, torch.cat([torch.arange(lo, hi, device=a.device) for lo, hi in ranges])]
        slot = torch.cat(
            [torch.full((hi - lo,), i, dtype=torch.int64, device=a.device) for i, (lo, hi) in enumerate(ranges)]
        )
        if self.over_batch:
            flat = chosen.reshape(-1)
            sample = flat // n
            order = torch.argsort(sample * slots + slot, stable=True)
            flat, sample, slot = flat[order], sample[order], slot[order]
            cols, pre = flat % n, a.reshape(-1)[flat]
            band_rows = sample * slots + slot
        else:
            width = chosen.shape[1]
            cols, pre = chosen.reshape(-1), a.gather(1, chosen).reshape(-1)
            sample = torch.arange(b, device=a.device).repeat_interleave(width)
            band_rows = (torch.arange(b, device=a.device)[:, None] * slots + slot[None, :]).reshape(-1)
        order_cache: list[tuple[torch.Tensor, torch.Tensor]] = []

        def shared_order() -> tuple[torch.Tensor, torch.Tensor]:
            # (sample, latent) pairs are unique, so sorting by (latent, sample) or by (latent,
            # b*S + s) gives the same order: both patterns share one.
            if not order_cache:
                order_cache.append(column_order(sample, cols, b, n, unique=True))
            return order_cache[0]

        by_sample = Pattern(sample, cols, b, n, self.backend, rows_sorted=True, col_order=shared_order)
        by_band = Pattern(band_rows, cols, b * slots, n, self.backend, rows_sorted=True, col_order=shared_order)
        return Selection(pre, by_sample, by_band, slots)

    def dense_mask(self, band: int, a: torch.Tensor) -> torch.Tensor:
        """0/1 mask [B, n] of a band decoded densely (the ReLU included)."""
        lo, hi = self.band_range(band)
        view_shape = (1, self.width) if self.over_batch else tuple(a.shape)
        if hi >= self.width:  # everything not ranked into an earlier band
            mask = torch.ones(view_shape, dtype=a.dtype, device=a.device)
            if self.ranked is not None:
                mask.scatter_(1, self.ranked[:, :lo], 0.0)
        else:
            assert self.ranked is not None
            mask = torch.zeros(view_shape, dtype=a.dtype, device=a.device).scatter_(1, self.ranked[:, lo:hi], 1.0)
        return mask.view_as(a) * (a > 0).to(a.dtype)


def make_plan(
    batch: int, n: int, ks: Sequence[int], over_batch: bool, backend: str, dense_fraction: float = DENSE_BAND_FRACTION
) -> _Plan:
    """Cut the levels `ks` (ascending) into bands and choose each band's path."""
    ks = list(ks)
    if not ks or any(b <= a for a, b in zip(ks, ks[1:])) or ks[0] < 1:
        raise ValueError(f"levels must be positive and strictly increasing, got {ks}")
    width = batch * n if over_batch else n
    counts = [min(k * batch, width) if over_batch else min(k, width) for k in ks]
    per_row = batch if over_batch else 1
    sparse_bands = []
    low = 0
    for i, c in enumerate(counts):
        if c < width and (c - low) / per_row <= dense_fraction * n:
            sparse_bands.append(i)
        low = c
    return _Plan(counts, width, over_batch, batch, n, sparse_bands, backend)


@dataclass
class SparseObjective:
    """What one sparse training forward produces (processed space), as `Objective` does."""

    loss: torch.Tensor  # scalar to backpropagate
    x_hat: torch.Tensor  # [B, d] reconstruction of the smallest level (logged as fvu)
    latent_counts: torch.Tensor  # [n] int64: samples in which each latent is active at the widest level
    kept_min: torch.Tensor  # smallest positive kept activation at the smallest level (BatchTopK's threshold sample)


def nested_objective(
    x_tilde: torch.Tensor,
    W_enc: torch.Tensor,
    b_enc: torch.Tensor,
    W_dec: torch.Tensor,
    b_pre: torch.Tensor,
    ks: Sequence[int],
    weights: Sequence[float],
    over_batch: bool = False,
    loss: str = "nmse",
    backend: str | None = None,
    encoder_backward: str = "sparse",
    dense_fraction: float | None = None,
) -> SparseObjective:
    """sum_i w_i * L(x_hat_i, x) / sum_i w_i over nested top-k levels `ks` (ascending), in one pass.

    Level i keeps ReLU(a) at the k_i highest-ranked pre-activations a = x W_enc + (b_enc - b_pre
    W_enc) of each sample (or the k_i*B highest of the batch when `over_batch`); k >= n is plain
    ReLU. Equal in value and gradient to the dense `SparseAutoencoder.objective` (Matryoshka with
    `ks` = nesting; TopK / BatchTopK with ks=[k], weights=[1])."""
    if len(weights) != len(ks):
        raise ValueError(f"{len(weights)} weights for {len(ks)} levels")
    if encoder_backward not in ENCODER_BACKWARDS:
        raise ValueError(f"unknown encoder backward {encoder_backward!r}; choose from {ENCODER_BACKWARDS}")
    device = x_tilde.device
    batch, n = x_tilde.shape[0], W_enc.shape[1]
    x_sq = x_tilde.float().square().sum(-1)
    # Under autocast the products run in its dtype (as the dense path's matmuls do); the casts
    # sit outside the Functions so their gradients come back in the parameters' dtype.
    dtype = torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type) else W_enc.dtype
    if device.type == "cpu":
        dtype = W_enc.dtype  # MKL sparse products have no bf16 kernels: CPU computes in the weights' dtype
    if dense_fraction is None:
        dense_fraction = default_dense_fraction(device, dtype)
    plan = make_plan(batch, n, ks, over_batch, backend or default_backend(device, dtype), dense_fraction)
    with torch.autocast(device.type, enabled=False):
        c = b_enc - b_pre @ W_enc
        x_c, w_enc, w_dec, c = x_tilde.to(dtype), W_enc.to(dtype), W_dec.to(dtype), c.to(dtype)
        n_bands = len(plan.counts)
        all_sparse = len(plan.sparse_bands) == n_bands
        if all_sparse:
            values, selection = _SparseEncode.apply(x_c, w_enc, c, plan, encoder_backward)
            a = None
        else:
            a = torch.addmm(c, x_c, w_enc)
            with torch.no_grad():
                selection = plan.select(a.detach())
            pre = _gather_entries(a, selection, plan)
            values = pre * (pre > 0).to(pre.dtype)
        parts: list[torch.Tensor | None] = [None] * n_bands
        if plan.sparse_bands:
            decoded = sparse_decode(values, w_dec, selection.by_band).view(batch, selection.slots, -1)
            for slot, band in enumerate(plan.sparse_bands):
                parts[band] = decoded[:, slot]
        dense_z: list[torch.Tensor] = []
        for band in range(n_bands):
            if parts[band] is None:
                assert a is not None
                z = a * plan.dense_mask(band, a.detach())
                dense_z.append(z)
                parts[band] = z @ w_dec
        acc = torch.promote_types(dtype, torch.float32)  # levels are summed in >= float32
        recons = torch.stack([p.to(acc) for p in parts if p is not None]).cumsum(0) + b_pre.to(acc)
    level_losses = [losses.reconstruction_loss(r, x_tilde, loss, x_sq) for r in recons]
    total = losses.weighted_mean(level_losses, weights)
    with torch.no_grad():
        active = values.detach() > 0
        counts = torch.bincount(selection.by_sample.cols[active], minlength=n)
        for z in dense_z:
            counts += (z.detach() > 0).sum(0)
        kept_min = _kept_min(plan, selection, values.detach(), dense_z)
    return SparseObjective(loss=total, x_hat=recons[0], latent_counts=counts, kept_min=kept_min)


def _gather_entries(a: torch.Tensor, selection: Selection, plan: _Plan) -> torch.Tensor:
    """a at the selected entries, differentiably (dense-encoder mode)."""
    if plan.over_batch:
        return a.reshape(-1)[selection.by_sample.rows * plan.n + selection.by_sample.cols]
    return a.gather(1, selection.by_sample.cols.view(plan.batch, -1)).reshape(-1)


def _kept_min(plan: _Plan, selection: Selection, values: torch.Tensor, dense_z: list[torch.Tensor]) -> torch.Tensor:
    """Smallest positive activation of the first level (0 if none), as act.kept_minimum."""
    if plan.sparse_bands and plan.sparse_bands[0] == 0:
        first = values[selection.by_band.rows % selection.slots == 0]
    else:
        first = dense_z[0].reshape(-1)
    positive = torch.where(first > 0, first, torch.full_like(first, float("inf")))
    low = positive.min() if positive.numel() else positive.new_tensor(float("inf"))
    return torch.where(torch.isfinite(low), low, torch.zeros_like(low)).float()


def topk_objective(
    x_tilde: torch.Tensor,
    W_enc: torch.Tensor,
    b_enc: torch.Tensor,
    W_dec: torch.Tensor,
    b_pre: torch.Tensor,
    k: int,
    over_batch: bool = False,
    loss: str = "nmse",
    backend: str | None = None,
    encoder_backward: str = "sparse",
) -> SparseObjective:
    """TopK (over_batch=False) or BatchTopK (True) reconstruction loss at k*d per sample."""
    return nested_objective(
        x_tilde, W_enc, b_enc, W_dec, b_pre, [k], [1.0], over_batch, loss, backend, encoder_backward
    )


def topk_latents(a: torch.Tensor, k: int, backend: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample top-k of pre-activations a [B, n]: (indices [B, k] ascending per row, ReLU
    values [B, k]); inference-time selection for evaluation."""
    k = min(k, a.shape[1])
    idx = a.topk(k, dim=1, sorted=False).indices.sort(dim=1).values
    values = a.gather(1, idx)
    return idx, values * (values > 0).to(values.dtype)


def batch_topk_latents(a: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The k*B largest pre-activations of the whole batch: (rows [N] non-decreasing, latents [N],
    ReLU values [N]); rows carry a variable count, mean k."""
    batch, n = a.shape
    flat = a.reshape(-1).topk(min(k * batch, batch * n), sorted=False).indices.sort().values
    values = a.reshape(-1)[flat]
    return flat // n, flat % n, values * (values > 0).to(values.dtype)


def decode_latents(
    rows: torch.Tensor,
    cols: torch.Tensor,
    values: torch.Tensor,
    W_dec: torch.Tensor,
    b_pre: torch.Tensor,
    batch: int,
    backend: str | None = None,
) -> torch.Tensor:
    """x~_hat = sum_j v_j W_dec[latent_j] + b_pre per sample, at k*d per sample (processed space)."""
    pattern = Pattern(rows, cols, batch, W_dec.shape[0], backend or default_backend(W_dec.device))  # any order
    return sparse_decode(values.to(W_dec.dtype), W_dec, pattern) + b_pre


__all__ = [
    "BACKENDS",
    "DENSE_BAND_FRACTION",
    "default_backend",
    "default_dense_fraction",
    "Pattern",
    "SparseObjective",
    "batch_topk_latents",
    "decode_latents",
    "make_plan",
    "nested_objective",
    "sparse_decode",
    "topk_latents",
    "topk_objective",
]
