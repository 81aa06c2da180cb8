"""Seed stability: Hungarian matching of decoder atoms."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from msae.metrics.stability import match_atoms


def test_self_and_permuted_copy_match_perfectly():
    w = torch.randn(64, 16, generator=torch.Generator().manual_seed(0))
    assert match_atoms(w, w).mean_cosine() == pytest.approx(1.0)
    perm = torch.randperm(64, generator=torch.Generator().manual_seed(1))
    matching = match_atoms(w, w[perm] * 2.5)
    assert matching.mean_cosine() == pytest.approx(1.0) and matching.fraction_above(0.9) == 1.0
    np.testing.assert_array_equal(perm[matching.cols].numpy(), matching.rows)


def test_matching_is_the_best_permutation_by_brute_force():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    unit = lambda m: m / np.linalg.norm(m, axis=1, keepdims=True)  # noqa: E731
    cos = unit(a) @ unit(b).T
    best = max(np.mean([cos[i, p[i]] for i in range(6)]) for p in itertools.permutations(range(6)))
    result = match_atoms(torch.tensor(a), torch.tensor(b))
    assert result.mean_cosine() == pytest.approx(best, abs=1e-12)
    assert result.fraction_above(0.9) == np.mean(result.cosines > 0.9)


def test_rectangular_matching_and_width_check():
    a = torch.randn(5, 3, generator=torch.Generator().manual_seed(3))
    b = torch.cat([a, torch.randn(4, 3, generator=torch.Generator().manual_seed(4))])
    assert len(match_atoms(a, b).cosines) == 5 and match_atoms(a, b).mean_cosine() == pytest.approx(1.0)
    with pytest.raises(ValueError):
        match_atoms(a, torch.randn(5, 4))
