"""Sparse activation functions of the SAE variants, written once and shared.

Every top-k style activation (TopK, BatchTopK, each Matryoshka level) is the same mechanism:
rank the pre-activations (per sample, or over the whole batch) and keep ReLU(a) where the rank is
below k. Ranking once and comparing ranks against several k gives nested Matryoshka levels for the
price of one top-k, and exact counts even when values tie.

JumpReLU is z = a * H(a - theta) with a learned per-latent theta; its step function has no useful
gradient, so theta is trained through the straight-through estimator of Rajamanoharan et al. (2024)
with a rectangle kernel of width `bandwidth`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def nested_topk(a: torch.Tensor, ks: Sequence[int], over_batch: bool) -> list[torch.Tensor]:
    """ReLU(a) restricted to the top-k pre-activations for each k in ascending `ks`.

    Per sample (TopK): each row keeps its own k largest raw pre-activations, so a row has exactly
    min(k, #positive among them) active latents. Over the batch (BatchTopK): the k*B largest
    entries of the whole [B, n] batch are kept, so the batch mean is at most k. A k that covers
    everything (k >= n) is plain ReLU. Levels are nested by construction (same ranking)."""
    if list(ks) != sorted(ks):
        raise ValueError(f"ks must be ascending, got {list(ks)}")
    rows = a.shape[0]
    view = a.reshape(1, -1) if over_batch else a
    width = view.shape[1]
    counts = [min(k * (rows if over_batch else 1), width) for k in ks]
    partial = [c for c in counts if c < width]
    with torch.no_grad():
        positive = a > 0
        if not partial:
            masks = []
        elif len(partial) == 1:
            _, idx = view.topk(partial[0], dim=1, sorted=False)
            keep = torch.zeros_like(view, dtype=torch.bool).scatter_(1, idx, True)
            masks = [keep.view_as(a) & positive]
        else:
            _, idx = view.topk(partial[-1], dim=1, sorted=True)
            order = torch.arange(partial[-1], device=a.device, dtype=torch.int32).expand_as(idx)
            rank = torch.full_like(view, width, dtype=torch.int32).scatter_(1, idx, order).view_as(a)
            masks = [(rank < c) & positive for c in partial]
        masks += [positive] * (len(counts) - len(partial))
        masks = [m.to(a.dtype) for m in masks]
    # A multiply by a constant 0/1 mask: its backward is one multiply too.
    return [a * m for m in masks]


def kept_minimum(z: torch.Tensor) -> torch.Tensor:
    """The smallest positive activation kept in a batch (0 if none): one sample of the
    inference threshold that reproduces BatchTopK's training sparsity without a batch."""
    positive = torch.where(z > 0, z, torch.full_like(z, float("inf")))
    low = positive.min()
    return torch.where(torch.isfinite(low), low, torch.zeros_like(low)).detach().float()


def threshold_relu(a: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """a where a > threshold (threshold >= 0, scalar or per latent), else 0."""
    return torch.where(a > threshold, a, torch.zeros_like(a))


def _rectangle(u: torch.Tensor) -> torch.Tensor:
    return (u.abs() < 0.5).to(u.dtype)


class _JumpReLU(torch.autograd.Function):
    """z = a * H(a - theta). d z/d a = H(a - theta) (the ordinary gradient of the kept values);
    d z/d theta = -(theta / eps) * K((a - theta) / eps), the pseudo-derivative of the jump."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, theta: torch.Tensor, bandwidth: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(a, theta)
        ctx.bandwidth = bandwidth
        return a * (a > theta).to(a.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        a, theta = ctx.saved_tensors
        eps = ctx.bandwidth
        grad_a = grad * (a > theta).to(grad.dtype)
        grad_theta = (grad * (-(theta / eps) * _rectangle((a - theta) / eps))).sum(0)
        return grad_a, grad_theta, None


class _Step(torch.autograd.Function):
    """H(a - theta) with d/d theta = -(1/eps) K((a - theta)/eps) and no gradient to a, so the
    L0 penalty moves thresholds, not the encoder."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, theta: torch.Tensor, bandwidth: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(a, theta)
        ctx.bandwidth = bandwidth
        return (a > theta).to(a.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        a, theta = ctx.saved_tensors
        eps = ctx.bandwidth
        grad_theta = (grad * (-(1.0 / eps) * _rectangle((a - theta) / eps))).sum(0)
        return None, grad_theta, None


def jumprelu(a: torch.Tensor, theta: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """JumpReLU with the straight-through gradient for the per-latent threshold `theta` [n]."""
    return _JumpReLU.apply(a, theta.to(a.dtype), bandwidth)


def step_count(a: torch.Tensor, theta: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """Per-sample number of latents above threshold (the active count JumpReLU penalises), differentiable in `theta`."""
    return _Step.apply(a, theta.to(a.dtype), bandwidth).sum(-1)
