"""Decoder orthogonality (DO): how much the dictionary atoms overlap."""

from __future__ import annotations

import torch

BLOCK_ELEMENTS = 1 << 24  # Gram entries per block (64 MB in float32)


def decoder_orthogonality(w_dec: torch.Tensor) -> float:
    """DO = (1/n²) Σ_{i≠j} cos(w_i, w_j)² over the n decoder atoms (rows of `w_dec`, [n, d]).

    The mean over all n² entries with the zero diagonal in the denominator, as the paper.
    Difference from the reference code: it squares raw dot products of the rows, which AdamW
    leaves only approximately unit norm; here the rows are normalised first, so DO is the mean
    squared cosine the paper describes (a zero row counts as orthogonal to everything). The n×n
    Gram matrix is never built: blocks of rows (BLOCK_ELEMENTS entries) are squared and summed in
    float64, so n = 32768 needs ~100 MB.
    """
    n = w_dec.shape[0]
    unit = torch.nn.functional.normalize(w_dec.detach(), dim=1)
    step = max(1, BLOCK_ELEMENTS // max(1, n))
    total = 0.0
    for start in range(0, n, step):
        gram = unit[start : start + step] @ unit.T
        local = torch.arange(gram.shape[0], device=gram.device)
        gram[local, local + start] = 0.0
        total += float((gram.double() ** 2).sum())
    return total / (n * n)
