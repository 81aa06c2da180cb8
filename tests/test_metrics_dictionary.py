"""Decoder orthogonality (DO) against a brute-force double loop and known dictionaries."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from msae.metrics.dictionary import decoder_orthogonality


def _brute(w: np.ndarray) -> float:
    norms = np.linalg.norm(w, axis=1, keepdims=True)
    u = np.divide(w, norms, out=np.zeros_like(w), where=norms > 0)  # a zero atom stays zero
    n = len(u)
    return sum((u[i] @ u[j]) ** 2 for i in range(n) for j in range(n) if i != j) / n**2


@pytest.mark.parametrize("shape", [(37, 9), (9, 37), (20, 20)])
def test_do_matches_brute_force_on_random_dictionary(shape):
    """More atoms than dimensions (the d×d Gram), fewer (the n×n Gram), and square; a zero atom
    counts as orthogonal to everything."""
    w = np.random.default_rng(0).normal(size=shape) * np.geomspace(3.0, 0.1, shape[1])  # anisotropic
    w[3] = 0.0
    expected = _brute(w)
    assert decoder_orthogonality(torch.tensor(w)) == pytest.approx(expected, rel=1e-12)
    assert decoder_orthogonality(torch.tensor(w, dtype=torch.float32)) == pytest.approx(expected, rel=1e-5)


def test_do_orthonormal_is_zero_and_small_case_by_hand():
    q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(16, 16)))
    assert decoder_orthogonality(torch.tensor(q)) == pytest.approx(0.0, abs=1e-15)  # float64 rounding
    # atoms e1, e1, (e1+e2)/sqrt2: squared cosines off the diagonal 1,1/2 | 1,1/2 | 1/2,1/2 -> 4/9
    w = torch.tensor([[1.0, 0.0], [2.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    assert decoder_orthogonality(w) == pytest.approx(4 / 9, rel=1e-12)


def test_do_random_unit_vectors_near_one_over_d():
    w = torch.randn(512, 64, generator=torch.Generator().manual_seed(2))
    assert decoder_orthogonality(w) == pytest.approx((511 / 512) / 64, rel=0.1)
