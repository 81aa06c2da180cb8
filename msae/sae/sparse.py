"""Sparse training: TopK, BatchTopK and one-pass k-nested Matryoshka at k*d per sample, and the
inference-time sparse encode/decode that evaluation uses.

The dense objective (`SparseAutoencoder.objective(dense=True)`) multiplies a [B, n] activation
that is almost all zeros by the decoder, once per Matryoshka level, forward and backward. Here
only what is active is touched (msae.sae.bands cuts the levels into bands, msae.sae.kernels does
the products):

- Every sparse band is decoded once, as one product over stacked rows (band, sample); each
  level's loss comes from the running residual over bands (`_NestedResiduals`: no stack of the
  levels' reconstructions, and a reverse running sum as its backward).
- Encoder (`_Encode`): the forward matmul is dense (the top-k needs every pre-activation),
  but its weight gradient x^T G has only k nonzeros per row of G and is one transposed sparse
  product too. A densely decoded band (the paper's last level, ReLU over all latents) makes G
  dense: the same Function then returns that band's code under a boolean mask and gathers every
  gradient on the pre-activations into one [B, n] buffer for a matmul.
- Levels wider than the code: when the plan has a dense band, the CPU first counts each sample's
  positive pre-activations and clips the levels to them (msae.sae.bands.make_plan): the ReLU
  zeroes everything ranked below, so a trained SAE's sparser code shrinks the paper's k = n level
  to its positives, each sample keeps only its own, and the plan is often all sparse again.
- AuxK (Gao et al. 2024) selects each sample's top-k_aux dead latents from the same
  pre-activations and decodes them sparsely; its gradient reaches only those latents.

Loss and gradients equal the dense computation to float tolerance (tests/test_sae_sparse.py,
tests/test_sae_objective.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from msae.sae import losses
from msae.sae.bands import Plan, Selection, default_dense_fraction, make_plan
from msae.sae.kernels import Pattern, default_backend, sparse_decode

ENCODER_BACKWARDS = ("sparse", "dense")


@dataclass
class Objective:
    """What one training forward produces (processed space); no host sync to build it."""

    loss: torch.Tensor  # scalar to backpropagate
    x_hat: torch.Tensor  # [B, d] reconstruction of the smallest level (logged as fvu)
    latent_counts: torch.Tensor  # [n] int64: samples in which each latent is active at the widest level
    kept_min: torch.Tensor  # smallest positive kept activation at the smallest level (BatchTopK's threshold sample)


@dataclass
class AuxK:
    """The AuxK term: `alpha` times the loss of the top-`k` `dead` latents ([n] bool) fitting the
    residual the main reconstruction (the widest level) left."""

    dead: torch.Tensor
    k: int
    alpha: float


class _Encode(torch.autograd.Function):
    """The code of one batch from its pre-activations a = x W + c (computed here, or passed in
    when the plan was clipped to them): the sparse bands' values ReLU(a[selected]), AuxK's values
    when asked for, and each dense band's [B, n] code ReLU(a) on its mask. The masks are kept as
    booleans, the code is one `where`, and the backward writes every gradient on a into one [B, n]
    buffer: no float masks, no zero-filled scatter per part, no sum of them.

    Backward: G = dL/da has one nonzero per selected entry, plus the dense bands' masked
    gradients. With no dense band, dL/dW = x^T G and dL/dc = column sums of G are sparse products
    ("sparse") or one dense matmul ("dense"); a dense band makes G dense, and it is a matmul."""

    @staticmethod
    def forward(ctx: Any, x, w_enc, c, plan: Plan, encoder_backward: str, dead, dead_k: int, a=None):  # type: ignore[override]
        with torch.no_grad():
            if a is None:
                a = torch.addmm(c, x, w_enc)  # the bias rides in the GEMM's epilogue
            selection = plan.select(a, dead, dead_k)
            masks = [plan.dense_mask(band, a) for band in plan.dense_bands]
            codes = [torch.where(mask, a, 0.0) for mask in masks]
        pre = selection.pre_values
        gate = (pre > 0).to(pre.dtype)
        if selection.dead is not None:
            aux_gate = selection.dead.gate
            aux_values = a.gather(1, selection.dead.index).reshape(-1) * aux_gate
        else:
            aux_gate = aux_values = a.new_zeros(0)
        ctx.save_for_backward(x, w_enc, gate, aux_gate, *masks)
        ctx.selection, ctx.encoder_backward = selection, encoder_backward
        return pre * gate, aux_values, selection, *codes

    @staticmethod
    def backward(
        ctx: Any, grad_values: torch.Tensor, grad_aux: torch.Tensor | None, _unused: Any, *grad_codes: torch.Tensor
    ):  # type: ignore[override]
        x, w_enc, gate, aux_gate, *masks = ctx.saved_tensors
        selection: Selection = ctx.selection
        parts: list[tuple[Pattern, torch.Tensor]] = [(selection.by_sample, grad_values * gate)]
        if selection.dead is not None and grad_aux is not None:
            parts.append((selection.dead.pattern, grad_aux * aux_gate))
        grad_x = grad_w = grad_c = None
        if masks or ctx.encoder_backward == "dense":
            dense = torch.where(masks[0], grad_codes[0], 0.0) if masks else x.new_zeros(x.shape[0], w_enc.shape[1])
            for mask, grad in zip(masks[1:], grad_codes[1:]):  # the bands' masks are disjoint
                dense = torch.where(mask, grad, dense)
            # the selected entries are distinct and outside every dense band's mask; AuxK's may
            # repeat them, so those accumulate
            for i, (pattern, grad) in enumerate(parts):
                dense.index_put_((pattern.rows, pattern.cols), grad, accumulate=i > 0)
            grad_w = x.T @ dense if ctx.needs_input_grad[1] else None
            grad_c = dense.sum(0) if ctx.needs_input_grad[2] else None
            grad_x = dense @ w_enc.T if ctx.needs_input_grad[0] else None
            return grad_x, grad_w, grad_c, None, None, None, None, None
        if ctx.needs_input_grad[1]:
            grad_w = sum((p.t_mm(g, x) for p, g in parts[1:]), parts[0][0].t_mm(parts[0][1], x)).T
        if ctx.needs_input_grad[2]:
            grad_c = torch.zeros(w_enc.shape[1], dtype=gate.dtype, device=gate.device)
            for p, g in parts:
                grad_c.index_add_(0, p.cols, g)
        if ctx.needs_input_grad[0]:
            w_t = w_enc.T.contiguous()
            grad_x = sum((p.mm(g, w_t) for p, g in parts[1:]), parts[0][0].mm(parts[0][1], w_t))
        return grad_x, grad_w, grad_c, None, None, None, None, None


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
    auxk: AuxK | None = None,
) -> Objective:
    """sum_i w_i * L(x_hat_i, x) / sum_i w_i over nested top-k levels `ks` (ascending), in one
    pass, plus the optional AuxK term.

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
    x_sq = losses.squared_norm(x_tilde)
    # Under autocast the products run in its dtype (as the dense path's matmuls do); the casts
    # sit outside the Functions so their gradients come back in the parameters' dtype.
    dtype = torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type) else W_enc.dtype
    if device.type == "cpu":
        dtype = W_enc.dtype  # MKL sparse products have no bf16 kernels: CPU computes in the weights' dtype
    if dense_fraction is None:
        dense_fraction = default_dense_fraction(device, dtype)
    plan = make_plan(batch, n, ks, over_batch, backend or default_backend(device, dtype), dense_fraction)
    dead, dead_k = (auxk.dead, auxk.k) if auxk is not None else (None, 0)
    with torch.autocast(device.type, enabled=False):
        c = b_enc - b_pre @ W_enc
        x_c, w_enc, w_dec, c = x_tilde.to(dtype), W_enc.to(dtype), W_dec.to(dtype), c.to(dtype)
        a_counted = None
        if device.type == "cpu" and not plan.all_sparse:  # a dense band: clip it to the positives,
            with torch.no_grad():  # counted on the host (free there, a sync on CUDA)
                a_counted = torch.addmm(c, x_c, w_enc)
            row_positives = _row_positives(a_counted, over_batch)
            plan = make_plan(batch, n, ks, over_batch, plan.backend, dense_fraction, row_positives)
        values, aux_values, selection, *dense_z = _Encode.apply(
            x_c, w_enc, c, plan, encoder_backward, dead, dead_k, a_counted
        )
        parts: list[torch.Tensor | None] = [None] * len(plan.counts)  # an empty band adds nothing
        if plan.sparse_bands:
            decoded = sparse_decode(values, w_dec, selection.by_band).view(batch, selection.slots, -1)
            for band, part in zip(plan.sparse_bands, decoded.unbind(1)):  # one stacked gradient
                parts[band] = part
        for band, z in zip(plan.dense_bands, dense_z):
            parts[band] = z @ w_dec
        e_hat = sparse_decode(aux_values, w_dec, selection.dead.pattern) if selection.dead is not None else None
    rows = losses.row_weights(loss, x_tilde, x_sq)
    scales = torch.stack([f * rows for f in losses.level_factors(weights)])
    total, first, last = _NestedResiduals.apply(x_tilde, b_pre, scales, *parts)
    if auxk is not None and e_hat is not None:
        total = total + auxk.alpha * losses.auxk_loss(e_hat, x_tilde - last)
    with torch.no_grad():
        active = (values.detach() > 0).to(torch.int64)  # no boolean indexing: it would sync the host
        counts = torch.zeros(n, dtype=torch.int64, device=device).index_add_(0, selection.by_sample.cols, active)
        for z in dense_z:
            counts += (z.detach() > 0).sum(0)
    return Objective(loss=total, x_hat=first, latent_counts=counts, kept_min=selection.kept_min)


class _NestedResiduals(torch.autograd.Function):
    """Every level's loss from running residuals: E_i = b_pre - x + P_1 + ... + P_i for the
    decoded increments P_i of the bands (None: an empty band), loss = sum_i sum_b s_ib ||E_ib||^2,
    in >= float32. No stack of the levels' reconstructions and no autograd cumsum: the gradient of
    P_i is the reverse running sum of 2 s_j E_j over j >= i. Also returns the first and last
    levels' reconstructions (no gradient)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, b_pre: torch.Tensor, scales: torch.Tensor, *parts: torch.Tensor | None):  # type: ignore[override]
        acc = losses.at_least_float32(x, b_pre, *[part for part in parts if part is not None])
        residual = b_pre.to(acc) - x.to(acc)
        residuals, total = [], scales.new_zeros((), dtype=acc)
        for scale, part in zip(scales, parts, strict=True):
            if part is not None:
                residual = residual + part.to(acc)
            residuals.append(residual)
            total = total + (scale * residual.square().sum(1)).sum()
        ctx.save_for_backward(scales, *residuals)
        ctx.dtypes = [None if part is None else part.dtype for part in parts]
        ctx.b_pre_dtype = b_pre.dtype
        first, last = residuals[0] + x.to(acc), residuals[-1] + x.to(acc)
        ctx.mark_non_differentiable(first, last)
        return total, first, last

    @staticmethod
    def backward(ctx: Any, grad_total: torch.Tensor, _first: Any, _last: Any):  # type: ignore[override]
        scales, *residuals = ctx.saved_tensors
        grads: list[torch.Tensor | None] = [None] * len(residuals)
        running = torch.zeros_like(residuals[0])
        for i in reversed(range(len(residuals))):
            running = running + residuals[i] * (2 * grad_total * scales[i]).unsqueeze(1)
            if ctx.dtypes[i] is not None:
                grads[i] = running.to(ctx.dtypes[i])
        return None, running.sum(0).to(ctx.b_pre_dtype), None, *grads


def _row_positives(a: torch.Tensor, over_batch: bool) -> torch.Tensor:
    """Positive pre-activations per row of the ranked view (the batch's one count, for BatchTopK)."""
    positive = a.detach() > 0
    return positive.sum(dtype=torch.int64).view(1) if over_batch else positive.sum(1, dtype=torch.int32)


def topk_latents(a: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample top-k of pre-activations a [B, n]: (indices [B, k] ascending per row, ReLU
    values [B, k]); inference-time selection for evaluation."""
    k = min(k, a.shape[1])
    idx = a.topk(k, dim=1, sorted=False).indices.sort(dim=1).values
    values = a.gather(1, idx)
    return idx, values * (values > 0).to(values.dtype)


def decode_latents(
    rows: torch.Tensor,
    cols: torch.Tensor,
    values: torch.Tensor,
    W_dec: torch.Tensor,
    b_pre: torch.Tensor,
    batch: int,
    backend: str | None = None,
    rows_sorted: bool = False,
) -> torch.Tensor:
    """x~_hat = sum_j v_j W_dec[latent_j] + b_pre per sample, at k*d per sample (processed space).
    `rows_sorted`: the entries come grouped by sample (no sort needed)."""
    pattern = Pattern(rows, cols, batch, W_dec.shape[0], backend or default_backend(W_dec.device), rows_sorted)
    return sparse_decode(values.to(W_dec.dtype), W_dec, pattern) + b_pre


__all__ = ["ENCODER_BACKWARDS", "AuxK", "Objective", "decode_latents", "nested_objective", "topk_latents"]
