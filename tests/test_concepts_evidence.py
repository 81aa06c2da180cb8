"""Image activity, the valid-concept evidence and ground-truth scores against brute force."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from msae.concepts.activity import image_activity
from msae.concepts.groundtruth import score_names
from msae.concepts.validity import ValidityRule, caption_agreement, embedding_agreement
from msae.errors import MsaeError
from msae.sae import SparseAutoencoder, make_config


def random_sae(d: int, n: int, seed: int) -> SparseAutoencoder:
    torch.manual_seed(seed)
    sae = SparseAutoencoder(make_config("topk", d, n / d, k=2))
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
        sae.b_enc.fill_(-0.8)  # some latents fire rarely
        sae.b_enc[:2] = -100.0  # and some never
    sae.set_statistics(torch.randn(d), 1.3)
    return sae.eval()


@pytest.mark.parametrize("budget", [10**8, 37])  # one block / many 1-2 row blocks
def test_image_activity_matches_brute_force(budget):
    d, n, m = 12, 30, 5
    sae = random_sae(d, n, seed=0)
    x = np.random.default_rng(1).normal(size=(250, d)).astype(np.float32)
    got = image_activity(sae, x, top=m, budget=budget, progress=False)
    pre = (x.astype(np.float64) - sae.mean.double().numpy()) * float(sae.scale) - sae.b_pre.detach().double().numpy()
    dense = np.maximum(pre @ sae.W_enc.detach().double().numpy() + sae.b_enc.detach().double().numpy(), 0)
    np.testing.assert_array_equal(got.active_count, (dense > 0).sum(0))
    np.testing.assert_allclose(got.frequency, (dense > 0).mean(0))
    for j in range(n):
        order = np.argsort(-dense[:, j], kind="stable")[:m]
        expect = [int(i) for i in order if dense[i, j] > 0] + [-1] * sum(dense[order, j] <= 0)
        assert got.top_images[j].tolist() == expect, j
        np.testing.assert_allclose(
            got.top_values[j], np.where(np.array(expect) >= 0, dense[order, j], 0), rtol=1e-4, atol=1e-5
        )
    counts = got.active_count  # dead, fewer than m, and many firing images are all exercised
    assert (counts == 0).any() and ((counts > 0) & (counts < m)).any() and (counts > m).any()


def test_image_activity_pads_when_fewer_images_than_top():
    sae = random_sae(4, 3, seed=0)
    got = image_activity(sae, np.random.default_rng(0).normal(size=(2, 4)), top=5, progress=False)
    assert got.top_images.shape == (3, 5) and (got.top_images[:, 2:] == -1).all()
    with pytest.raises(MsaeError, match="--top-images"):
        image_activity(sae, np.zeros((2, 4)), top=0)


def test_embedding_agreement_is_the_standardised_projection():
    rng = np.random.default_rng(0)
    n_img, d = 400, 6
    x = rng.normal(size=(n_img, d)) * rng.uniform(0.5, 2, size=d)
    terms = rng.normal(size=(3, d))
    vocab_mean = rng.normal(size=d) * 0.1
    top = np.array([rng.choice(n_img, 10, replace=False), np.argsort(-x[:, 0])[:10], np.r_[np.arange(7), [-1, -1, -1]]])
    got = embedding_agreement(terms, vocab_mean, x, top)
    for j in range(3):
        u = (terms[j] - vocab_mean) / np.linalg.norm(terms[j] - vocab_mean)
        p = x @ u
        picks = top[j][top[j] >= 0]
        m = len(picks)
        sd = np.sqrt(p.var() / m * (n_img - m) / (n_img - 1))
        assert got[j] == pytest.approx((p[picks].mean() - p.mean()) / sd, rel=1e-9)


def test_embedding_agreement_is_standard_normal_for_random_subsets():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 5)) + rng.normal(size=5)
    term = np.tile(rng.normal(size=5), (3000, 1))
    top = np.array([rng.choice(300, 12, replace=False) for _ in range(3000)])
    z = embedding_agreement(term, np.zeros(5), x, top)
    assert abs(z.mean()) < 0.06 and 0.95 < z.std() < 1.05


def test_caption_agreement_counts_whole_words_against_the_base_rate():
    captions = ["a red circle", "a reddish square", "Red star, top left", None, "a blue circle", "the top star"] * 5
    top = np.array([[0, 2, 6, 8, 3], [0, 1, 2, 3, 4], [2, 8, 14, 20, 26], [5, 5, 5, -1, -1]])
    names = ["red", "red", "top left", "purple"]
    rate, got = caption_agreement(names, top, captions)
    np.testing.assert_allclose(rate, [1.0, 0.5, 1.0, 0.0])
    n_cap = 25  # 30 captions, 5 None

    def sf(hits: int, m: int, p: float) -> float:
        return sum(math.comb(m, i) * p**i * (1 - p) ** (m - i) for i in range(hits, m + 1))

    assert got[0] == pytest.approx(sf(4, 4, 10 / n_cap))  # index 3 has no caption: 4 trials
    assert got[1] == pytest.approx(sf(2, 4, 10 / n_cap))  # "reddish" is not "red"
    assert got[2] == pytest.approx(sf(5, 5, 5 / n_cap))
    assert got[3] == 1.0
    with pytest.raises(MsaeError, match="none of the images has a caption"):
        caption_agreement(["red"], top[:1], [None] * 30)


def test_precision_counts_whole_words_of_multi_word_values():
    columns = pd.DataFrame({"attr_position": ["top left", "top", "top right", "bottom", "stop"]})
    top = np.array([[0, 1, 2, 3, 4], [0, 1, 2, 3, 4]])
    _, precision, summary = score_names(["top", "top left"], np.array([True, True]), top, columns)
    np.testing.assert_allclose(precision, [3 / 5, 1 / 5])  # "stop" is not "top"
    assert summary["coverage_position"] == pytest.approx(2 / 5)


def test_validity_rule_checks_its_thresholds():
    for bad, option in (
        (ValidityRule(min_active=0), "--min-active"),
        (ValidityRule(null_quantile=1.0), "--null-quantile"),
        (ValidityRule(caption_alpha=0), "--caption-alpha"),
        (ValidityRule(min_caption_rate=1.5), "--min-caption-rate"),
    ):
        with pytest.raises(MsaeError, match=option):
            bad.check()


def test_rule_three_branches_apply_their_thresholds():
    rule = ValidityRule(min_agreement_z=2.5, caption_alpha=0.05, min_caption_rate=0.6)
    z = np.array([2.4999, 2.5, 9.0, np.nan])
    assert rule.agrees_by_embeddings(z).tolist() == [False, True, True, False]
    rate = np.array([0.6, 0.59, 1.0, 0.8])
    p = np.array([0.05, 0.001, 0.0501, 0.0])
    assert rule.agrees_by_captions(rate, p).tolist() == [True, False, False, True]


def test_ground_truth_precision_and_coverage():
    columns = pd.DataFrame(
        {
            "attr_color": ["red", "red", "blue", "green", "Red", "blue"],
            "attr_size": ["small", "large", "small", "large", "small", "large"],
        }
    )
    names = ["red", "blue", "small", "dog", "green", "red"]
    valid = np.array([True, True, True, True, False, True])
    top = np.array([[0, 1, 4, -1], [2, 5, 0, 1], [0, 2, 4, 1], [0, 1, 2, 3], [3, -1, -1, -1], [-1, -1, -1, -1]])
    attributes, precision, summary = score_names(names, valid, top, columns)
    assert attributes == ["color", "color", "size", "", "color", "color"]
    np.testing.assert_allclose(precision[:5], [1.0, 0.5, 0.75, np.nan, 1.0])
    assert np.isnan(precision[5])
    assert summary["named_attribute_latents"] == 3  # valid, attribute-named, with top images
    assert summary["named_precision"] == pytest.approx((1 + 0.5 + 0.75) / 3)
    assert summary["named_precision_above_half"] == pytest.approx(2 / 3)
    assert summary["named_precision_all"] == pytest.approx((1 + 0.5 + 0.75 + 1.0) / 4)
    assert summary["coverage_color"] == pytest.approx(2 / 3)  # red, blue of red/blue/green
    assert summary["coverage_size"] == pytest.approx(1 / 2)
    assert summary["valid_color"] == 2 and summary["valid_size"] == 1
    assert score_names(names, valid, top, pd.DataFrame({"text": ["x"] * 6}))[2] == {}
