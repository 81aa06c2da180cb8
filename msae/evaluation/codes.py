"""The latents of one encoding path on one block of rows, kept in the form that path produces:
per-sample top-k entries (index, values) for the top-k paths, a dense [B, n] matrix for the dense
ReLU and threshold paths. Every metric reads a `Code` through the same few operations, so a top-k
path costs k*d per sample to decode (msae.sae.sparse.decode_latents), not n*d.

The pre-activations of a block are computed once and shared by every path; the per-sample top-k
of every k on the grid are nested, each taken from the next wider one. A top-k path whose k is at
least every row's count of positive pre-activations equals the dense path on that block (top-k of
ReLU(a) then keeps every positive entry): it is not ranked at all. More generally a top-k code
equals the dense one on every row with at most k positive entries, and `dense_except` names the
other rows, so the caller reuses the dense path's work everywhere else (a k just below the widest
rows' counts touches a few rows only).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from msae.metrics import sparsity
from msae.metrics.alignment import RowEntries
from msae.sae.bands import DENSE_BAND_FRACTION
from msae.sae.model import SparseAutoencoder
from msae.sae.sparse import decode_latents


@dataclass
class Code:
    """Latents of a block: `dense` [B, n], or `index` [B, k] with ReLU `values` [B, k] (0 where the
    ranked pre-activation is not positive)."""

    n: int
    dense: torch.Tensor | None = None
    index: torch.Tensor | None = None
    values: torch.Tensor | None = None
    dense_except: torch.Tensor | None = None  # rows where it differs from the dense code; None: unknown

    @property
    def rows(self) -> int:
        return int((self.dense if self.dense is not None else self.values).shape[0])  # type: ignore[union-attr]

    def to_dense(self) -> torch.Tensor:
        """[B, n] latents (materialised for a top-k code)."""
        if self.dense is not None:
            return self.dense
        assert self.index is not None and self.values is not None
        return self.values.new_zeros(self.rows, self.n).scatter_(1, self.index, self.values)

    @property
    def entries(self) -> RowEntries | None:
        """A top-k code's entries, for the kernel searches that read them directly."""
        return RowEntries(self.index, self.values) if self.index is not None and self.values is not None else None

    def take(self, rows: torch.Tensor) -> Code:
        """The code of the rows `rows` only."""
        if self.dense is not None:
            return Code(self.n, dense=self.dense[rows])
        assert self.index is not None and self.values is not None
        return Code(self.n, index=self.index[rows], values=self.values[rows])

    def decode(self, sae: SparseAutoencoder) -> torch.Tensor:
        """Reconstruction in RAW embedding space; a narrow top-k code by sparse gathers, a wide one
        (or a dense code) by one matmul, whichever the band rule of training says is cheaper."""
        if self.dense is not None or self.index.shape[1] > DENSE_BAND_FRACTION * self.n:  # type: ignore[union-attr]
            return sae.decode(self.to_dense())
        assert self.index is not None and self.values is not None
        k = self.index.shape[1]
        rows = torch.arange(self.rows, device=self.index.device).repeat_interleave(k)
        processed = decode_latents(
            rows, self.index.reshape(-1), self.values.reshape(-1), sae.W_dec, sae.b_pre, self.rows, rows_sorted=True
        )
        return sae.postprocess(processed)

    @functools.cached_property
    def active(self) -> torch.Tensor:
        """Active latents per sample, float64 [B] (the conventional L0); counted once per code,
        which several paths may share."""
        source = self.dense if self.dense is not None else self.values
        assert source is not None
        return sparsity.active_count(source)

    @functools.cached_property
    def latent_counts(self) -> torch.Tensor:
        """Samples in which each latent is active, int64 [n] on the CPU."""
        if self.dense is not None:
            return sparsity.latent_count(self.dense).cpu()
        assert self.index is not None and self.values is not None
        active = (self.values > 0).to(torch.int64).reshape(-1)  # no boolean indexing: no host sync
        counts = torch.zeros(self.n, dtype=torch.int64, device=active.device).index_add_(
            0, self.index.reshape(-1), active
        )
        return counts.cpu()


def block_codes(sae: SparseAutoencoder, x: torch.Tensor, ks: list[int], sparse_k: int | None) -> dict[str, Code]:
    """The codes of one block of RAW rows `x`: "dense" (ReLU over all latents), "sparse" (the
    model's own inference activation) and "k=<k>" (per-sample top-k of ReLU(a)) for each k in
    `ks` below n; `sparse_k`: the k at which the sparse path is a per-sample top-k, if it is."""
    n = sae.config.n_latents
    a = sae.pre_activation(x)
    dense = a.clamp_min(0)
    nowhere = torch.empty(0, dtype=torch.int64, device=x.device)
    codes = {"dense": Code(n, dense=dense, dense_except=nowhere)}
    wanted = sorted({k for k in [*ks, *([sparse_k] if sparse_k else [])] if k < n})
    positives = codes["dense"].active
    max_positive = int(positives.max()) if len(x) else 0
    # nested unsorted top-k, widest first: each k's entries are the largest of the next wider k's
    # (~17% cheaper than one sorted top-k whose prefixes serve every k)
    ranked: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    values, index = a, None
    for k in sorted((k for k in wanted if k < max_positive), reverse=True):
        values, pos = values.topk(k, dim=1, sorted=False)
        index = pos if index is None else index.gather(1, pos)
        ranked[k] = index, values
    for k in wanted:
        if k not in ranked:
            codes[f"k={k}"] = codes["dense"]
            continue
        index, values = ranked[k]
        differs = torch.nonzero(positives > k).reshape(-1)
        codes[f"k={k}"] = Code(n, index=index, values=values * (values > 0).to(values.dtype), dense_except=differs)
    if sparse_k:
        codes["sparse"] = codes[f"k={sparse_k}"] if sparse_k < n else codes["dense"]
    else:
        z = sae.activate(a)
        same = torch.equal(z, dense)  # ReLU: the dense path
        codes["sparse"] = Code(n, dense=z, dense_except=nowhere if same else None)
    return codes


__all__ = ["Code", "block_codes"]
