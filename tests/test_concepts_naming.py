"""Naming latents by decoder atoms and by activation, against float64 brute force."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from msae.concepts.naming import rank_terms, stream_top_terms
from msae.errors import MsaeError
from msae.sae import SparseAutoencoder, make_config


def random_sae(d: int, n: int, seed: int, scale: float = 0.7) -> SparseAutoencoder:
    torch.manual_seed(seed)
    sae = SparseAutoencoder(make_config("relu", d, n / d))
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    sae.set_statistics(torch.randn(d) * 2, scale)
    return sae.eval()


def brute_force(sae, terms: np.ndarray, method: str, gap: str):
    """Scores [V, n] in float64 with plain numpy: (reported, ranking)."""
    t = terms.astype(np.float64)
    mean = sae.mean.double().numpy()
    scale = float(sae.scale)
    w_dec = sae.W_dec.detach().double().numpy()
    if method.startswith("decoder"):
        atoms = w_dec / scale if gap == "center" else w_dec / scale + mean
        tt = t - t.mean(0) if gap == "center" else t
        if method == "decoder":
            tt = tt / np.linalg.norm(tt, axis=1, keepdims=True)
        score = tt @ (atoms / np.linalg.norm(atoms, axis=1, keepdims=True)).T
        return score, score
    x = t - t.mean(0) + mean if gap == "center" else t
    pre = ((x - mean) * scale - sae.b_pre.detach().double().numpy()) @ sae.W_enc.detach().double().numpy()
    pre = pre + sae.b_enc.detach().double().numpy()
    return np.maximum(pre, 0), pre


@pytest.mark.parametrize("method", ["decoder", "decoder-projection", "activation"])
@pytest.mark.parametrize("gap", ["center", "none"])
def test_rank_terms_matches_brute_force_in_small_blocks(method, gap):
    d, n, v, r = 16, 40, 300, 4
    sae = random_sae(d, n, seed=1)
    terms = np.random.default_rng(2).normal(size=(v, d)).astype(np.float32) + 3.0
    got = rank_terms(sae, terms, method, gap, r=r, budget=7 * n)  # 7 terms per block: many merges
    reported, ranking = brute_force(sae, terms, method, gap)
    order = np.argsort(-ranking, axis=0)[:r].T  # [n, r]
    np.testing.assert_array_equal(got.terms, order)
    np.testing.assert_allclose(got.scores, np.take_along_axis(reported.T, order, 1), rtol=1e-4, atol=1e-4)
    best, second = np.take_along_axis(ranking.T, order[:, :2], 1).T
    np.testing.assert_allclose(got.margin, best - second, rtol=1e-4, atol=1e-4)
    z = (best - ranking.mean(0)) / ranking.std(0)
    np.testing.assert_allclose(got.z, z, rtol=1e-4, atol=1e-4)


def test_atoms_that_are_centred_terms_are_named_exactly():
    """Planted dictionary: each atom is one term's embedding minus the vocabulary mean."""
    rng = np.random.default_rng(0)
    d, v = 32, 500
    terms = (rng.normal(size=(v, d)) + rng.normal(size=d) * 5).astype(np.float32)
    planted = rng.choice(v, size=20, replace=False)
    centred = terms[planted] - terms.mean(0)
    sae = random_sae(d, 20, seed=3, scale=3.0)
    with torch.no_grad():
        sae.W_dec.copy_(torch.tensor(centred / np.linalg.norm(centred, axis=1, keepdims=True) * 3.0))
    got = rank_terms(sae, terms, "decoder", "center", r=3)
    np.testing.assert_array_equal(got.terms[:, 0], planted)
    np.testing.assert_allclose(got.scores[:, 0], 1.0, atol=1e-5)


def test_projection_ignores_terms_the_backbone_cannot_tell_apart():
    """Many near-identical 'unseen' terms around one point: their normalised residuals are random
    directions that win the cosine for a weakly aligned atom; the projection keeps the real word."""
    rng = np.random.default_rng(0)
    d = 32
    real = np.linalg.qr(rng.normal(size=(d, 4)))[0].T * 15  # orthogonal real words
    unseen = rng.normal(size=d) + rng.normal(size=(3000, d)) * 0.05
    terms = np.vstack([real, unseen]).astype(np.float32)
    centred = terms - terms.mean(0)
    noise = rng.normal(size=(4, d))
    basis = np.linalg.qr(centred[:4].T)[0]
    noise -= noise @ basis @ basis.T  # the atoms' off-word part is orthogonal to every real word
    atoms = centred[:4] / np.linalg.norm(centred[:4], axis=1, keepdims=True) + 2.5 * noise / np.linalg.norm(
        noise, axis=1, keepdims=True
    )
    sae = random_sae(d, 4, seed=0, scale=1.0)
    with torch.no_grad():
        sae.W_dec.copy_(torch.tensor(atoms / np.linalg.norm(atoms, axis=1, keepdims=True), dtype=torch.float32))
    cosine = rank_terms(sae, terms, "decoder", r=1).terms[:, 0]
    projection = rank_terms(sae, terms, "decoder-projection", r=1).terms[:, 0]
    assert (cosine >= 4).all()
    np.testing.assert_array_equal(projection, np.arange(4))


def test_uncentred_official_space_is_pulled_to_the_mean():
    """With a large shared text offset and a training mean added to every atom (the official
    choice), the same planted atoms are no longer named exactly: one hub term wins most latents."""
    rng = np.random.default_rng(0)
    d, v = 32, 500
    offset = rng.normal(size=d) * 20
    terms = (rng.normal(size=(v, d)) + offset).astype(np.float32)
    planted = rng.choice(v, size=20, replace=False)
    centred = terms[planted] - terms.mean(0)
    sae = random_sae(d, 20, seed=3, scale=1.0)
    with torch.no_grad():
        sae.W_dec.copy_(torch.tensor(centred / np.linalg.norm(centred, axis=1, keepdims=True)))
        sae.mean.copy_(torch.tensor(offset * 1.5, dtype=torch.float32))
    official = rank_terms(sae, terms, "decoder", "none", r=1)
    assert (official.terms[:, 0] == planted).mean() < 0.5
    assert np.unique(official.terms[:, 0]).size < 10


@settings(max_examples=30, deadline=None)
@given(
    v=st.integers(1, 40), n=st.integers(1, 9), r=st.integers(1, 6), budget=st.integers(1, 200), seed=st.integers(0, 99)
)
def test_stream_top_terms_equals_full_topk(v, n, r, budget, seed):
    gen = torch.Generator().manual_seed(seed)
    terms = torch.randn(v, 3, generator=gen)
    atoms = torch.randn(n, 3, generator=gen)
    val, idx, mean, std = stream_top_terms(terms, lambda b: b @ atoms.T, n, r, budget)
    full = terms.double() @ atoms.double().T
    ref_val, ref_idx = full.topk(min(r, v), dim=0)
    torch.testing.assert_close(val.double(), ref_val, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.gather(full, 0, idx), ref_val, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(mean, full.mean(0), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(std, full.std(0, unbiased=False), rtol=1e-5, atol=1e-5)


def test_bad_arguments_are_named():
    sae = random_sae(8, 4, seed=0)
    terms = np.zeros((5, 8), dtype=np.float32)
    with pytest.raises(MsaeError, match="--method"):
        rank_terms(sae, terms, "nearest")
    with pytest.raises(MsaeError, match="--gap"):
        rank_terms(sae, terms, "decoder", "mean")
    with pytest.raises(MsaeError, match="--top-terms"):
        rank_terms(sae, terms, r=0)
    with pytest.raises(MsaeError, match="dim 8"):
        rank_terms(sae, np.zeros((5, 7), dtype=np.float32))


def test_stream_statistics_survive_a_large_common_offset():
    """Scores of mean 1e4 and std ~1: naive float32 E[x^2] - E[x]^2 would lose the variance."""
    gen = torch.Generator().manual_seed(0)
    terms = torch.randn(500, 4, generator=gen, dtype=torch.float64)
    atoms = torch.randn(3, 4, generator=gen, dtype=torch.float64)
    full = terms @ atoms.T + 1e4
    _, _, mean, std = stream_top_terms(terms.float(), lambda b: b.double() @ atoms.T + 1e4, 3, 2, budget=3 * 37)
    torch.testing.assert_close(std, full.std(0, unbiased=False), rtol=1e-3, atol=0)
    torch.testing.assert_close(mean, full.mean(0), rtol=1e-9, atol=1e-3)
