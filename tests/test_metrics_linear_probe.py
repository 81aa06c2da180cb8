"""The linear probe (LP): training recipe, best-state restore, KL and agreement."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from msae.metrics import linear_probe as probe


def _blobs(seed: int, n_per: int = 60, d: int = 8, classes: int = 3, spread: float = 0.15):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, d)) * 3
    x = np.concatenate([c + spread * rng.normal(size=(n_per, d)) for c in centres])
    labels = [f"class{i}" for i in range(classes) for _ in range(n_per)]
    return torch.tensor(x, dtype=torch.float32), labels


def test_probe_on_separable_data_agrees_with_itself():
    x, labels = _blobs(0)
    feats = probe.probe_features(x, x.mean(0), 2.0)
    trained = probe.train_probe(feats, labels, seed=1, batch_size=16, lr=1e-2, max_epochs=20)
    assert trained.classes == ["class0", "class1", "class2"]
    kl, agree = probe.compare_predictions(trained, feats, feats)
    assert agree.mean() == 1.0 and kl.abs().max() < 1e-12
    assert probe.label_hits(trained, feats, labels).mean() == 1.0


def test_kl_and_agreement_match_numpy():
    x, labels = _blobs(1, spread=1.5)
    feats = probe.probe_features(x, x.mean(0), 1.0)
    trained = probe.train_probe(feats, labels, seed=2, max_epochs=5)
    noisy = probe.probe_features(x + torch.randn(x.shape, generator=torch.Generator().manual_seed(3)), x.mean(0), 1.0)
    kl, agree = probe.compare_predictions(trained, feats, noisy)
    w, b = trained.linear.weight.detach().double().numpy(), trained.linear.bias.detach().double().numpy()

    def softmax(f):
        logits = f.double().numpy() @ w.T + b
        e = np.exp(logits - logits.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    p, q = softmax(feats), softmax(noisy)
    np.testing.assert_allclose(kl.numpy(), (p * np.log(p / q)).sum(1), rtol=1e-4, atol=1e-9)
    np.testing.assert_array_equal(agree.numpy(), (p.argmax(1) == q.argmax(1)).astype(float))


def test_probe_features_are_centred_scaled_unit_rows():
    x = torch.randn(10, 4, dtype=torch.float64)
    mean = torch.randn(4, dtype=torch.float64)
    f = probe.probe_features(x, mean, 3.0)
    ref = (x - mean) / (x - mean).norm(dim=1, keepdim=True)
    assert torch.allclose(f, ref)


def test_best_state_is_really_restored():
    x, labels = _blobs(8, spread=3.5, n_per=80)
    feats = probe.probe_features(x, x.mean(0), 1.0)
    trained = probe.train_probe(feats, labels, seed=5, patience=3, max_epochs=60, batch_size=16, lr=1e-2)
    assert trained.best_f1 == max(trained.holdout_f1)
    assert trained.holdout_f1[-1] < trained.best_f1  # the last epoch is worse: a no-op restore would show
    assert trained.holdout_f1[trained.best_epoch] == trained.best_f1
    # re-score the returned probe on the same held-out rows (seeded split) -> the best F1, not the last
    gen = torch.Generator().manual_seed(5)
    hold = torch.randperm(len(labels), generator=gen)[: int(round(0.1 * len(labels)))]
    targets = torch.tensor([trained.classes.index(v) for v in labels])
    assert probe._macro_f1(trained.linear, feats[hold], targets[hold]) == pytest.approx(trained.best_f1)


def test_probe_learns_small_sets_at_the_reference_learning_rate():
    x, labels = _blobs(10, n_per=100)  # 300 rows, one step per epoch at batch 512: F1 plateaus first
    feats = probe.probe_features(x, x.mean(0), 1.0)
    trained = probe.train_probe(feats, labels, seed=3)
    assert probe.label_hits(trained, feats, labels).mean() > 0.9


def test_probe_is_deterministic_for_a_seed():
    x, labels = _blobs(6, spread=1.0)
    feats = probe.probe_features(x, x.mean(0), 1.0)
    a = probe.train_probe(feats, labels, seed=7, max_epochs=4)
    b = probe.train_probe(feats, labels, seed=7, max_epochs=4)
    assert torch.equal(a.linear.weight, b.linear.weight)


def test_probe_needs_two_classes_and_a_holdout():
    x = torch.randn(10, 3)
    with pytest.raises(ValueError, match="2 classes"):
        probe.train_probe(x, ["a"] * 10)
    with pytest.raises(ValueError, match="holdout"):
        probe.train_probe(x, ["a", "b"] * 5, holdout=0.0)
