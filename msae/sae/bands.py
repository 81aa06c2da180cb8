"""Which latents a sparse training step touches: nested top-k levels cut into bands, and AuxK's
dead latents.

Selection ranks the pre-activations once (per sample, or over the whole batch for BatchTopK) and
cuts the ranking into bands [k_{i-1}, k_i): band i holds the latents that level i adds to level
i-1, so the level reconstructions are running sums over bands and all levels together cost one
decode of the widest sparse level. A band that covers a large share of the latents (the paper's
last level k = n is plain ReLU over every latent, "all remaining positive latents") is decoded as
a dense masked matmul instead: such a band is inherently n*d per sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from msae.sae.activations import kept_minimum
from msae.sae.kernels import Pattern, column_order

# A band whose mean count per row exceeds this share of the latents is decoded densely (a masked
# matmul), otherwise by gathers. The break-even depends on how much faster the device's GEMM is
# than its gathers: on 2 CPU cores ~n/8; on an H200 ~n/10 in fp32 and ~n/200 in bf16, whose
# tensor cores make dense bands nearly free (benchmarks/step.py, benchmarks/gpu.sh).
DENSE_BAND_FRACTION = 0.125
DENSE_BAND_FRACTION_CUDA = {torch.float32: 0.1, torch.float64: 0.1}
DENSE_BAND_FRACTION_CUDA_LOW_PRECISION = 0.005
CPU_TOPK_CHUNKS = 4  # one row's top-k on the CPU as this many side-by-side rows (see _topk_of_rows)


def default_dense_fraction(device: torch.device, dtype: torch.dtype = torch.float32) -> float:
    if device.type != "cuda":
        return DENSE_BAND_FRACTION
    return DENSE_BAND_FRACTION_CUDA.get(dtype, DENSE_BAND_FRACTION_CUDA_LOW_PRECISION)


def nested_rank(view: torch.Tensor, counts: Sequence[int]) -> torch.Tensor:
    """Indices [R, counts[-1]] of each row's largest entries, arranged so that for every c in the
    ascending `counts` the first c columns are the row's top c (ties broken as topk does). On the
    CPU, rows of a batch: one sorted top-k of the widest count (measured 1.5-2x faster there than
    the partitions below). Else one unsorted top-k, then each smaller level is a top-k of the
    previous level's values moved to the front: ~2x cheaper than a sorted top-k of the widest
    count over a whole batch."""
    if view.device.type == "cpu" and view.shape[0] > 1:
        return view.topk(counts[-1], dim=1, sorted=len(counts) > 1).indices
    values, idx = _topk_of_rows(view, counts[-1])
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


def _topk_of_rows(view: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Unsorted top-k of each row. A single CPU row (BatchTopK's whole batch) runs on one thread
    in torch, so it is cut into CPU_TOPK_CHUNKS rows whose top-k are taken side by side, then the
    top-k of those candidates: exact, since the k largest of the row are among each chunk's k
    largest (measured 2.5x faster for k = 32*4,096 of 4,096 x 4,096 on 2 cores)."""
    width = view.shape[1]
    chunks = CPU_TOPK_CHUNKS
    if view.device.type != "cpu" or view.shape[0] != 1 or width % chunks or chunks * k >= width:
        return view.topk(k, dim=1, sorted=False)
    part_values, part_idx = view.view(chunks, -1).topk(k, dim=1, sorted=False)
    part_idx += torch.arange(0, width, width // chunks, device=view.device)[:, None]
    values, pick = part_values.view(1, -1).topk(k, dim=1, sorted=False)
    return values, part_idx.view(1, -1).gather(1, pick)


@dataclass
class DeadEntries:
    """AuxK's selection: each sample's `k` largest pre-activations among dead latents, as a
    (sample, latent) pattern with `index` [B, k]; `gate` [B*k] is 1 where the entry is a dead
    latent with a positive pre-activation (others carry neither value nor gradient)."""

    pattern: Pattern
    index: torch.Tensor
    gate: torch.Tensor


def dead_topk(a: torch.Tensor, dead: torch.Tensor, k: int, backend: str) -> DeadEntries:
    """The top-k of ReLU(a) restricted to the latents marked `dead` [n] (no gradient here)."""
    batch, n = a.shape
    k = min(k, n)
    masked = a.masked_fill(~dead, float("-inf"))
    top = masked.topk(k, dim=1, sorted=False)
    rows = torch.arange(batch, device=a.device).repeat_interleave(k)
    pattern = Pattern(rows, top.indices.reshape(-1), batch, n, backend, rows_sorted=True)
    return DeadEntries(pattern, top.indices, (top.values > 0).reshape(-1).to(a.dtype))


@dataclass
class Selection:
    """The sparse bands of one batch, entries grouped by sample and, within a sample, by band:
    `pre_values` [N] their pre-activations, `by_sample` the (sample, latent) pattern and
    `by_band` the same entries on rows (sample b, band slot s) -> b*S + s, so that one product
    decodes every sparse band of every sample; `kept_min` the smallest positive activation of the
    first level (BatchTopK's threshold sample); `dead` AuxK's entries when asked for."""

    pre_values: torch.Tensor
    by_sample: Pattern
    by_band: Pattern
    slots: int  # S: number of sparse bands
    kept_min: torch.Tensor
    dead: DeadEntries | None = None


@dataclass
class Plan:
    """How a batch is cut into bands: the per-row (per-batch for BatchTopK) count of each level,
    which bands are decoded sparsely, and the backend."""

    counts: list[int]  # kept entries per level in the ranked view (k per sample, or k*B)
    width: int  # entries of one ranked row of the view (n, or B*n)
    over_batch: bool
    batch: int
    n: int
    sparse_bands: list[int]  # indices of the bands decoded through the sparse path
    backend: str
    row_positives: torch.Tensor | None = None  # [view rows] positive pre-activations, when counted
    positives: int | None = None  # their maximum
    ranked: torch.Tensor | None = None  # filled by select: nested_rank of the view

    @property
    def all_sparse(self) -> bool:
        return not self.dense_bands

    def band_range(self, band: int) -> tuple[int, int]:
        return (self.counts[band - 1] if band else 0), self.counts[band]

    def is_empty(self, band: int) -> bool:
        """A band past every row's positives: ReLU zeroes it, so it adds nothing to its level."""
        lo, hi = self.band_range(band)
        return lo == hi

    def _is_rest(self, band: int) -> bool:
        """A dense band that reaches the end of the ranking (all latents, or every positive one):
        its mask is 'not ranked into an earlier band', so the ranking can stop at its start."""
        hi = self.counts[band]
        ends_ranking = hi >= self.width or hi == self.positives
        return ends_ranking and band not in self.sparse_bands and not self.is_empty(band)

    def _rank_counts(self) -> list[int]:
        """The ascending distinct counts the ranking must place: every band's end but a rest's."""
        ends = {self.band_range(i)[1] for i in range(len(self.counts)) if not self._is_rest(i)}
        ends |= {self.band_range(i)[0] for i in range(len(self.counts)) if self._is_rest(i)}
        return sorted(c for c in ends if 0 < c < self.width)

    def select(self, a: torch.Tensor, dead: torch.Tensor | None = None, dead_k: int = 0) -> Selection:
        """Rank `a` ([B, n], no grad) and gather the sparse bands' entries (and, with a `dead`
        mask, AuxK's `dead_k` entries per sample)."""
        b, n = self.batch, self.n
        view = a.reshape(1, -1) if self.over_batch else a
        partial = self._rank_counts()
        self.ranked = nested_rank(view, partial) if partial else None
        kept_min = kept_minimum(self.first_level(a))
        aux = dead_topk(a, dead, dead_k, self.backend) if dead is not None else None
        slots = len(self.sparse_bands)
        ranges = [self.band_range(i) for i in self.sparse_bands]
        if not ranges:
            empty = torch.zeros(0, dtype=torch.int64, device=a.device)
            pattern = Pattern(empty, empty, b, n, self.backend, rows_sorted=True)
            return Selection(a.new_zeros(0), pattern, pattern, 0, kept_min, aux)
        assert self.ranked is not None
        # the ranked columns the sparse bands cover, ascending, and each one's band slot
        ranks = torch.cat([torch.arange(lo, hi, device=a.device) for lo, hi in ranges])
        prefix = ranges[0][0] == 0 and all(lo == prev_hi for (lo, _), (_, prev_hi) in zip(ranges[1:], ranges))
        slot = torch.cat(
            [torch.full((hi - lo,), i, dtype=torch.int64, device=a.device) for i, (lo, hi) in enumerate(ranges)]
        )
        if self.over_batch:  # the usual prefix of the ranking is a view, not a copy
            flat = self.ranked[0, : len(ranks)] if prefix else self.ranked[0].index_select(0, ranks)
            sample = flat // n
            order = torch.argsort(sample * slots + slot, stable=True)
            flat, sample, slot = flat[order], sample[order], slot[order]
            cols, pre = flat % n, a.reshape(-1)[flat]
            band_rows = sample * slots + slot
        else:
            # Row b keeps the ranked columns below its positive count (all of them when that is
            # unknown): past it the ReLU zeroes everything, so rows shorter than the batch's
            # longest carry no padding.
            if self.row_positives is None:
                kept, total = torch.full((b,), len(ranks), device=a.device), b * len(ranks)
            else:
                kept = torch.searchsorted(ranks, self.row_positives.to(ranks.dtype))
                total = int(kept.sum())  # a host sync, as counting the positives was
            sample = torch.repeat_interleave(torch.arange(b, device=a.device), kept, output_size=total)
            column = torch.arange(total, device=a.device) - (kept.cumsum(0) - kept).take(sample)
            cols = self.ranked.reshape(-1).take(sample * self.ranked.shape[1] + ranks.take(column))
            pre = a.reshape(-1).take(sample * n + cols)
            band_rows = sample * slots + slot.take(column)
        order_cache: list[tuple[torch.Tensor, torch.Tensor]] = []

        def shared_order() -> tuple[torch.Tensor, torch.Tensor]:
            # (sample, latent) pairs are unique and come sample by sample, so sorting by (latent,
            # sample) or by (latent, b*S + s) gives the same order: both patterns share one.
            if not order_cache:
                order_cache.append(column_order(sample, cols, b, n, rows_sorted=True))
            return order_cache[0]

        by_sample = Pattern(sample, cols, b, n, self.backend, rows_sorted=True, col_order=shared_order)
        by_band = Pattern(band_rows, cols, b * slots, n, self.backend, rows_sorted=True, col_order=shared_order)
        return Selection(pre, by_sample, by_band, slots, kept_min, aux)

    def first_level(self, a: torch.Tensor) -> torch.Tensor:
        """The pre-activations ranked into the first level, after `select`: the top counts[0] of
        each ranked row, or all of them when the first level reaches the end of the ranking."""
        view = a.reshape(1, -1) if self.over_batch else a
        if self.ranked is None or self.counts[0] > self.ranked.shape[1]:
            return view
        return view.gather(1, self.ranked[:, : self.counts[0]])

    @property
    def dense_bands(self) -> list[int]:
        """The bands decoded as dense masked matmuls (neither sparse nor empty), ascending."""
        return [i for i in range(len(self.counts)) if i not in self.sparse_bands and not self.is_empty(i)]

    def dense_mask(self, band: int, a: torch.Tensor) -> torch.Tensor:
        """Boolean mask [B, n] of a band decoded densely, the ReLU included (a > 0)."""
        lo, hi = self.band_range(band)
        view_shape = (1, self.width) if self.over_batch else tuple(a.shape)
        if self._is_rest(band):
            mask = torch.ones(view_shape, dtype=torch.bool, device=a.device)
            if self.ranked is not None:
                mask.scatter_(1, self.ranked[:, :lo], False)
        else:
            assert self.ranked is not None
            mask = torch.zeros(view_shape, dtype=torch.bool, device=a.device).scatter_(1, self.ranked[:, lo:hi], True)
        return mask.view_as(a) & (a > 0)


def make_plan(
    batch: int,
    n: int,
    ks: Sequence[int],
    over_batch: bool,
    backend: str,
    dense_fraction: float = DENSE_BAND_FRACTION,
    row_positives: torch.Tensor | None = None,
) -> Plan:
    """Cut the levels `ks` (ascending) into bands and choose each band's path. `row_positives`,
    the positive pre-activations of each row of the ranked view (one count, the batch's, for
    BatchTopK), clips the levels to their maximum: everything ranked below a row's positives is
    zeroed by the ReLU, so the paper's last level (k = n) shrinks to the positives a trained SAE
    actually has, bands past them are empty, and each row keeps only its own positives."""
    ks = list(ks)
    if not ks or any(b <= a for a, b in zip(ks, ks[1:])) or ks[0] < 1:
        raise ValueError(f"levels must be positive and strictly increasing, got {ks}")
    width = batch * n if over_batch else n
    counts = [min(k * batch, width) if over_batch else min(k, width) for k in ks]
    positives = None
    if row_positives is not None:
        positives = min(max(int(row_positives.max()), 1), width)
        counts = [min(c, positives) for c in counts]
    per_row = batch if over_batch else 1
    sparse_bands = []
    low = 0
    for i, c in enumerate(counts):
        if low < c < width and (c - low) / per_row <= dense_fraction * n:
            sparse_bands.append(i)
        low = c
    return Plan(counts, width, over_batch, batch, n, sparse_bands, backend, row_positives, positives)


__all__ = [
    "DENSE_BAND_FRACTION",
    "DeadEntries",
    "Plan",
    "Selection",
    "dead_topk",
    "default_dense_fraction",
    "make_plan",
    "nested_rank",
]
