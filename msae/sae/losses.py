"""Training losses of the paper (msae-reference §2, §1.3), in the processed input space.

Reconstruction is the reference's per-sample NMSE by default: ||x_hat - x||^2 / ||x||^2 for each
sample (x is mean-centred, so the denominator is its squared norm), averaged over the batch; `mse`
is the plain mean over B*d elements. Matryoshka's loss is the alpha-weighted mean of the
reconstruction loss of each nested level, with no sparsity term.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

RECONSTRUCTION_LOSSES = ("nmse", "mse")
WEIGHTINGS = ("rw", "uw")


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


def normalized_l1(z: torch.Tensor, x_sq: torch.Tensor) -> torch.Tensor:
    """The reference's ReLU-SAE sparsity term: mean over samples of ||z||_1 / ||x||_2."""
    return (z.float().abs().sum(-1) / x_sq.clamp_min(torch.finfo(torch.float32).tiny).sqrt()).mean()


def matryoshka_weights(levels: int, weighting: str) -> list[float]:
    """alpha per level in ascending-k order: rw = [h, ..., 1] (the sparsest level weighs most, as
    the reference code does despite its comment), uw = all ones. Not normalised."""
    if weighting == "rw":
        return [float(levels - i) for i in range(levels)]
    if weighting == "uw":
        return [1.0] * levels
    raise ValueError(f"unknown weighting {weighting!r}; choose from {WEIGHTINGS}")


def weighted_mean(losses: Sequence[torch.Tensor], weights: Sequence[float]) -> torch.Tensor:
    """sum_i alpha_i * loss_i / sum_i alpha_i."""
    total = sum(w * loss for w, loss in zip(weights, losses, strict=True))
    return total / float(sum(weights))
