"""Zero-shot accuracy and image->text retrieval against brute-force loops."""

from __future__ import annotations

import numpy as np
import torch

from msae.metrics import retention


def test_retrieval_of_identical_embeddings_is_perfect():
    x = torch.randn(50, 16, generator=torch.Generator().manual_seed(0))
    ranks = retention.retrieval_ranks(x * 3.0, x, torch.arange(50))
    hits = retention.recall_hits(ranks)
    assert hits[1].mean() == 1.0 and hits[5].mean() == 1.0


def test_retrieval_ranks_match_loop(monkeypatch):
    rng = np.random.default_rng(1)
    img, cap = rng.normal(size=(40, 8)), rng.normal(size=(60, 8))
    paired = rng.integers(0, 60, size=40)
    monkeypatch.setattr(retention, "CHUNK_ELEMENTS", 60 * 7)
    got = retention.retrieval_ranks(torch.tensor(img), torch.tensor(cap), torch.tensor(paired)).numpy()
    cos = lambda a, b: a @ b / np.linalg.norm(a) / np.linalg.norm(b)  # noqa: E731
    expected = [sum(cos(img[i], cap[j]) > cos(img[i], cap[paired[i]]) + 1e-6 for j in range(60)) for i in range(40)]
    np.testing.assert_array_equal(got, expected)
    hits = retention.recall_hits(torch.tensor(got), ks=(1, 5))
    np.testing.assert_array_equal(hits[5].numpy(), (np.array(expected) < 5).astype(float))


def test_zero_shot_predicts_nearest_class_by_cosine():
    rng = np.random.default_rng(2)
    classes = rng.normal(size=(5, 6))
    img = rng.normal(size=(30, 6)) * rng.uniform(0.1, 10, size=(30, 1))
    got = retention.zero_shot_predict(torch.tensor(img), torch.tensor(classes)).numpy()
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    np.testing.assert_array_equal(got, (unit(img) @ unit(classes).T).argmax(1))
