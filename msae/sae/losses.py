"""Training losses of the paper, in the processed input space.

Reconstruction is the reference's per-sample NMSE by default: ||x_hat - x||^2 / ||x||^2 for each
sample (x is mean-centred, so the denominator is its squared norm), averaged over the batch; `mse`
is the plain mean over B*d elements. Nested levels (Matryoshka) combine by a weighted mean. AuxK's
term is normalised by its own target, the residual, as Gao et al. (2024) do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import get_args

import torch

from msae.sae.architecture import Reconstruction

RECONSTRUCTION_LOSSES = get_args(Reconstruction)


def at_least_float32(*tensors: torch.Tensor) -> torch.dtype:
    """The dtype losses are computed in: the inputs' widest, at least float32 (bf16 under autocast
    is summed in float32, float64 stays float64)."""
    dtype = torch.float32
    for t in tensors:
        dtype = torch.promote_types(dtype, t.dtype)
    return dtype


def squared_norm(x: torch.Tensor) -> torch.Tensor:
    """Per-sample ||x||^2 in at least float32."""
    return x.to(at_least_float32(x)).square().sum(-1)


def squared_error(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-sample ||x_hat - x||^2 in at least float32."""
    acc = at_least_float32(x_hat, x)
    return (x_hat.to(acc) - x.to(acc)).square().sum(-1)


def row_weights(kind: str, x: torch.Tensor, x_sq: torch.Tensor) -> torch.Tensor:
    """Per-sample factors f [B] with loss = sum_b f_b ||x_hat_b - x_b||^2: 1 / (B ||x_b||^2) for
    nmse, 1 / (B d) for mse; `x_sq` is the per-sample ||x||^2 (computed once per batch)."""
    batch = x.shape[0]
    if kind == "nmse":
        return 1.0 / (batch * x_sq.clamp_min(torch.finfo(torch.float32).tiny))
    if kind == "mse":
        return torch.full((batch,), 1.0 / (batch * x.shape[-1]), dtype=at_least_float32(x), device=x.device)
    raise ValueError(f"unknown reconstruction loss {kind!r}; choose from {RECONSTRUCTION_LOSSES}")


def reconstruction_loss(x_hat: torch.Tensor, x: torch.Tensor, kind: str, x_sq: torch.Tensor) -> torch.Tensor:
    """Scalar reconstruction loss; `x_sq` is the per-sample ||x||^2 (computed once per batch)."""
    return (row_weights(kind, x, x_sq) * squared_error(x_hat, x)).sum()


def auxk_loss(e_hat: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """Gao et al.'s AuxK loss (their code's `normalized_mse`): sum ||e_hat - e||^2 over the batch
    divided by the residual's own spread sum ||e - mean(e)||^2, so the term keeps its weight as
    the main reconstruction improves (dividing by ||x~||^2 would shrink it with the FVU). 0 when
    the residual has no spread."""
    e = e.float()
    err = (e_hat.float() - e).square().sum()
    spread = (e - e.mean(0)).square().sum()
    return torch.where(spread > 0, err / spread.clamp_min(torch.finfo(torch.float32).tiny), torch.zeros_like(err))


def normalized_l1(z: torch.Tensor, x_sq: torch.Tensor) -> torch.Tensor:
    """The reference's ReLU-SAE sparsity term: mean over samples of ||z||_1 / ||x||_2."""
    return (z.float().abs().sum(-1) / x_sq.clamp_min(torch.finfo(torch.float32).tiny).sqrt()).mean()


def level_factors(weights: Sequence[float]) -> list[float]:
    """alpha_i / sum_j alpha_j: each nested level's share of the loss."""
    total = float(sum(weights))
    return [w / total for w in weights]


def weighted_mean(losses: Sequence[torch.Tensor], weights: Sequence[float]) -> torch.Tensor:
    """sum_i alpha_i * loss_i / sum_i alpha_i."""
    return torch.stack([f * loss for f, loss in zip(level_factors(weights), losses, strict=True)]).sum()
