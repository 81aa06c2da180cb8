"""Reconstruction, sparsity and streaming aggregation against float64 numpy on fresh data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from msae.metrics.aggregate import FeatureMoments, RunningMoments
from msae.metrics.reconstruction import DatasetFVU, Reference, compare
from msae.metrics.sparsity import LatentActivity, active_count, zero_fraction


def fvu_per_sample(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    return compare(Reference.of(x), x_hat).fvu


def cosine_per_sample(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    return compare(Reference.of(x), x_hat).cs


def _add(acc: DatasetFVU, x: torch.Tensor, x_hat: torch.Tensor) -> None:
    ref = Reference.of(x)
    acc.add(ref, compare(ref, x_hat))


def _data(seed: int, n: int = 300, d: int = 24):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) * rng.uniform(0.5, 3, size=d) + rng.normal(size=d) * 4
    x_hat = x + rng.normal(size=(n, d)) * 0.3
    return x, x_hat


def test_fvu_and_cs_match_numpy_per_sample():
    x, x_hat = _data(1)
    fvu = fvu_per_sample(torch.tensor(x, dtype=torch.float32), torch.tensor(x_hat, dtype=torch.float32)).numpy()
    expected = np.array([np.var(a - b) / np.var(a) for a, b in zip(x, x_hat)])
    np.testing.assert_allclose(fvu, expected, rtol=1e-5)
    cs = cosine_per_sample(torch.tensor(x), torch.tensor(x_hat)).numpy()
    np.testing.assert_allclose(
        cs, [a @ b / np.linalg.norm(a) / np.linalg.norm(b) for a, b in zip(x, x_hat)], rtol=1e-12
    )


def test_fvu_known_answers():
    x, _ = _data(2)
    xt = torch.tensor(x)
    assert torch.allclose(fvu_per_sample(xt, xt), torch.zeros(len(x), dtype=torch.float64))
    per_sample_mean = xt.mean(dim=1, keepdim=True).expand_as(xt)
    np.testing.assert_allclose(fvu_per_sample(xt, per_sample_mean).numpy(), 1.0, rtol=1e-12)
    dataset = DatasetFVU()
    for chunk in torch.split(xt, 70):
        _add(dataset, chunk, xt.mean(dim=0).expand_as(chunk))
    assert abs(dataset.value() - 1.0) < 1e-12
    perfect = DatasetFVU()
    _add(perfect, xt, xt)
    assert perfect.value() == 0.0


def test_dataset_fvu_streamed_equals_numpy():
    x, x_hat = _data(3, n=500)
    acc = DatasetFVU()
    for a, b in zip(np.array_split(x, 7), np.array_split(x_hat, 7)):
        _add(acc, torch.tensor(a, dtype=torch.float32), torch.tensor(b, dtype=torch.float32))
    x32, xh32 = x.astype(np.float32).astype(np.float64), x_hat.astype(np.float32).astype(np.float64)
    expected = ((x32 - xh32) ** 2).sum() / ((x32 - x32.mean(0)) ** 2).sum()
    assert abs(acc.value() - expected) < 1e-10


@settings(max_examples=30, deadline=None)
@given(st.lists(st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=20), min_size=1, max_size=6))
def test_running_moments_equal_population_mean_std(chunks):
    acc = RunningMoments()
    for chunk in chunks:
        acc.update(np.array(chunk))
    flat = np.concatenate([np.array(c) for c in chunks])
    assert acc.count == flat.size
    assert abs(acc.mean - flat.mean()) <= 1e-9 * (1 + abs(flat).max())
    assert abs(acc.std - flat.std()) <= 1e-6 * (1 + abs(flat).max())


def test_feature_moments_large_offset_no_cancellation():
    rng = np.random.default_rng(4)
    x = 1e6 + rng.normal(size=(1000, 3))
    acc = FeatureMoments()
    for part in np.array_split(x, 9):
        acc.update(torch.tensor(part))
    assert abs(acc.total_sq_deviation - ((x - x.mean(0)) ** 2).sum()) < 1e-6 * ((x - x.mean(0)) ** 2).sum()


def test_feature_moments_merged_equal_one_stream():
    """Accumulators of disjoint parts, merged (into an empty one too), equal numpy on the whole."""
    rng = np.random.default_rng(12)
    x = 50.0 + rng.normal(size=(700, 5)) * rng.uniform(0.1, 4, size=5)
    parts = np.array_split(x, 6)
    left, right, merged = FeatureMoments(), FeatureMoments(), FeatureMoments()
    for part in parts[:2]:
        left.update(torch.tensor(part))
    for part in parts[2:]:
        right.update(torch.tensor(part))
    merged.merge(FeatureMoments())  # nothing seen: no change
    merged.merge(left)
    merged.merge(right)
    assert merged.count == 700
    np.testing.assert_allclose(merged.mean, x.mean(0), rtol=1e-13)
    assert merged.total_sq_deviation == pytest.approx(((x - x.mean(0)) ** 2).sum(), rel=1e-12)


def test_sparsity_counts_match_loops():
    rng = np.random.default_rng(5)
    z = np.maximum(rng.normal(size=(50, 40)), 0) * (rng.random((50, 40)) < 0.3)
    zt = torch.tensor(z, dtype=torch.float32)
    np.testing.assert_allclose(
        zero_fraction(active_count(zt), 40).numpy(), [sum(v == 0 for v in row) / 40 for row in z]
    )
    np.testing.assert_allclose(active_count(zt).numpy(), [sum(v != 0 for v in row) for row in z])
    activity = LatentActivity(40)
    activity.update(torch.count_nonzero(zt[:20], dim=0))
    activity.update(torch.count_nonzero(zt[20:], dim=0))
    assert activity.never_active() == sum(1 for j in range(40) if not any(z[:, j]))
    dead = LatentActivity(40)
    dead.update(torch.zeros(40, dtype=torch.int64))
    assert dead.never_active() == 40
