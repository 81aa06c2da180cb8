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


def squared_error(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-sample ||x_hat - x||^2 in float32 (inputs may be bf16 under autocast)."""
    return (x_hat.float() - x.float()).square().sum(-1)


def reconstruction_loss(x_hat: torch.Tensor, x: torch.Tensor, kind: str, x_sq: torch.Tensor) -> torch.Tensor:
    """Scalar reconstruction loss; `x_sq` is the per-sample ||x||^2 (computed once per batch)."""
    err = squared_error(x_hat, x)
    if kind == "nmse":
        return (err / x_sq.clamp_min(torch.finfo(torch.float32).tiny)).mean()
    if kind == "mse":
        return err.mean() / x.shape[-1]
    raise ValueError(f"unknown reconstruction loss {kind!r}; choose from {RECONSTRUCTION_LOSSES}")


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


def weighted_mean(losses: Sequence[torch.Tensor], weights: Sequence[float]) -> torch.Tensor:
    """sum_i alpha_i * loss_i / sum_i alpha_i."""
    total = torch.stack([w * loss for w, loss in zip(weights, losses, strict=True)]).sum()
    return total / float(sum(weights))
