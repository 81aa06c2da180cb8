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

from msae.sae.kernels import Pattern, column_order

# A band whose mean count per row exceeds this share of the latents is decoded densely (a masked
# matmul), otherwise by gathers. The break-even depends on how much faster the device's GEMM is
# than its gathers: on 2 CPU cores ~n/8; on an H200 ~n/10 in fp32 and ~n/200 in bf16, whose
# tensor cores make dense bands nearly free (benchmarks/step.py, benchmarks/gpu.sh).
DENSE_BAND_FRACTION = 0.125
DENSE_BAND_FRACTION_CUDA = {torch.float32: 0.1, torch.float64: 0.1}
DENSE_BAND_FRACTION_CUDA_LOW_PRECISION = 0.005


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
    decodes every sparse band of every sample; `dead` AuxK's entries when asked for."""

    pre_values: torch.Tensor
    by_sample: Pattern
    by_band: Pattern
    slots: int  # S: number of sparse bands
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
    ranked: torch.Tensor | None = None  # filled by select: nested_rank of the view

    @property
    def all_sparse(self) -> bool:
        return len(self.sparse_bands) == len(self.counts)

    def band_range(self, band: int) -> tuple[int, int]:
        return (self.counts[band - 1] if band else 0), self.counts[band]

    def select(self, a: torch.Tensor, dead: torch.Tensor | None = None, dead_k: int = 0) -> Selection:
        """Rank `a` ([B, n], no grad) and gather the sparse bands' entries (and, with a `dead`
        mask, AuxK's `dead_k` entries per sample)."""
        b, n = self.batch, self.n
        view = a.reshape(1, -1) if self.over_batch else a
        partial = [c for c in self.counts if c < self.width]
        self.ranked = nested_rank(view, partial) if partial else None
        aux = dead_topk(a, dead, dead_k, self.backend) if dead is not None else None
        slots = len(self.sparse_bands)
        ranges = [self.band_range(i) for i in self.sparse_bands]
        if not ranges:
            empty = torch.zeros(0, dtype=torch.int64, device=a.device)
            pattern = Pattern(empty, empty, b, n, self.backend, rows_sorted=True)
            return Selection(a.new_zeros(0), pattern, pattern, 0, aux)
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
            # (sample, latent) pairs are unique and come sample by sample, so sorting by (latent,
            # sample) or by (latent, b*S + s) gives the same order: both patterns share one.
            if not order_cache:
                order_cache.append(column_order(sample, cols, b, n, rows_sorted=True))
            return order_cache[0]

        by_sample = Pattern(sample, cols, b, n, self.backend, rows_sorted=True, col_order=shared_order)
        by_band = Pattern(band_rows, cols, b * slots, n, self.backend, rows_sorted=True, col_order=shared_order)
        return Selection(pre, by_sample, by_band, slots, aux)

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
) -> Plan:
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
    return Plan(counts, width, over_batch, batch, n, sparse_bands, backend)


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
