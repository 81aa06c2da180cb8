"""Prefix-nested Matryoshka (Bussmann et al. 2025): its loss against an independent float64
computation, its options, and a planted hierarchy whose coarse atoms must land in the first prefix."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sae_helpers import atom_recovery, hierarchical, write_store

from msae.config.base import ConfigError
from msae.config.train import make_config, train_config
from msae.sae import load
from msae.sae.model import SparseAutoencoder
from msae.train import train_sae


def _random_module(d: int, n: int, k: int, prefixes: list[int], seed: int) -> SparseAutoencoder:
    torch.manual_seed(seed)
    sae = SparseAutoencoder(make_config("prefix_matryoshka", d, n / d, k=k, prefixes=prefixes))
    with torch.no_grad():
        for p in (sae.W_enc, sae.W_dec, sae.b_enc, sae.b_pre):
            p.copy_(torch.randn_like(p) * 0.3)
    return sae.train()


def _reference_loss(sae: SparseAutoencoder, x: np.ndarray, k: int, prefixes: list[int]) -> float:
    """Bussmann's objective written from scratch in float64 numpy: BatchTopK over the batch, then the
    mean over prefixes of the per-sample NMSE of the prefix's reconstruction."""
    w_enc, b_enc = sae.W_enc.detach().double().numpy(), sae.b_enc.detach().double().numpy()
    w_dec, b_pre = sae.W_dec.detach().double().numpy(), sae.b_pre.detach().double().numpy()
    acts = np.maximum((x - b_pre) @ w_enc + b_enc, 0.0)
    flat = acts.ravel()
    keep = np.argsort(-flat, kind="stable")[: k * len(x)]
    z = np.zeros_like(flat)
    z[keep] = flat[keep]
    z = z.reshape(acts.shape)
    losses = []
    for m in prefixes:
        recon = z[:, :m] @ w_dec[:m] + b_pre
        losses.append(np.mean(((recon - x) ** 2).sum(1) / (x**2).sum(1)))
    return float(np.mean(losses))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_loss_equals_an_independent_float64_computation(seed):
    d, n, k, prefixes = 12, 48, 3, [4, 12, 48]
    sae = _random_module(d, n, k, prefixes, seed)
    x = np.random.default_rng(seed).normal(size=(40, d))
    x_t = torch.tensor(x, dtype=torch.float32)
    result = sae.objective(x_t)
    assert result.loss.item() == pytest.approx(_reference_loss(sae, x, k, prefixes), rel=1e-5)
    assert int(result.latent_counts.sum()) <= k * len(x)  # BatchTopK: k per sample on average
    # the logged reconstruction is the first prefix's (latents < 4 only), not the whole dictionary's
    z = sae.kind.train_levels(sae, sae.pre_activation_processed(x_t))[-1]
    first = z.clone()
    first[:, 4:] = 0
    torch.testing.assert_close(result.x_hat, sae.decode_processed(first))
    assert not torch.allclose(result.x_hat, sae.decode_processed(z))


def test_levels_are_prefixes_of_one_batchtopk_activation():
    sae = _random_module(8, 32, 2, [4, 16, 32], seed=3)
    a = torch.randn(10, 32, generator=torch.Generator().manual_seed(3)) - 5.0
    a[:, 0] = 10.0 + torch.arange(10.0)  # large kept activations in the first prefix,
    a[:, 20] = 2.0 + 0.1 * torch.arange(10.0)  # the smallest kept ones beyond it
    levels = sae.kind.train_levels(sae, a)
    assert len(levels) == 3
    full = levels[-1]
    assert int((full > 0).sum()) == 20  # exactly k*B of the batch (continuous values: no ties)
    for level, m in zip(levels, [4, 16, 32]):
        torch.testing.assert_close(level[:, :m], full[:, :m])
        assert not level[:, m:].any()
    # the inference threshold learns the whole activation's smallest kept value, not the prefix's
    kept = full[full > 0].min().item()
    assert kept < full[:, :4][full[:, :4] > 0].min().item()
    assert sae.threshold.item() == pytest.approx(kept, rel=1e-6)  # one bias-corrected EMA step


def test_options_resolve_and_refuse_bad_prefixes():
    assert make_config("prefix_matryoshka", 128, 8, k=8).arch.prefixes == (64, 128, 256, 512, 1024)
    assert make_config("prefix_matryoshka", 128, 8, k=8, prefix_start=256).arch.prefixes == (256, 512, 1024)
    assert make_config("prefix_matryoshka", 32, 6, k=4, prefixes=[8]).arch.prefixes == (8, 192)
    for options, key in (
        ({"prefixes": [8, 4]}, "prefixes"),
        ({"prefixes": [8, 500]}, "prefixes"),
        ({"prefixes": [8], "prefix_start": 8}, "prefixes"),
        ({"prefix_start": 500}, "prefix-start"),
        ({"k": 500}, "k"),
    ):
        with pytest.raises(ConfigError) as info:
            make_config("prefix_matryoshka", 32, 6, **{"k": 4, **options})
        assert info.value.problems[0][0] == key


def _fit(tmp_path, x, variant, epochs, batch_size, **options):
    path = write_store(tmp_path / "hierarchy.parquet", x)
    config = train_config(
        variant=variant,
        embeddings=path,
        out=tmp_path / variant,
        expansion=6.0,
        epochs=epochs,
        batch_size=batch_size,
        lr=3e-3,
        k=4,
        auxk_alpha=1 / 32,  # Bussmann's recipe: latents of the small first prefix that die are revived
        auxk_dead_steps=50,
        log_every=50,
        device="cpu",
        **options,
    )
    return load(train_sae(config, progress=False).out)


def _first_prefix_fvu(sae: SparseAutoencoder, x: np.ndarray, m: int) -> float:
    """FVU of the reconstruction from the first m latents alone (inference activation)."""
    with torch.no_grad():
        x_t = torch.from_numpy(x)
        z = sae.encode(x_t)
        z[:, m:] = 0
        err = (sae.decode(z) - x_t).square().sum()
        return float(err / (x_t - x_t.mean(0)).square().sum())


def _hierarchy(tmp_path, n_samples: int, epochs: int, batch_size: int) -> dict[str, tuple[float, float, float]]:
    """(share of coarse atoms whose best latent is in the first 16, their mean max cosine, FVU of
    the first 16 latents alone) for prefix Matryoshka (prefixes 16, 48 of n = 192) and, as the
    negative control, BatchTopK trained the same way."""
    torch.set_flush_denormal(True)
    x, coarse, _ = hierarchical(n_samples, d=32, n_coarse=8, n_fine=88, fine_active=3, seed=0)
    out = {}
    for variant, options in (("prefix_matryoshka", {"prefixes": [16, 48]}), ("batchtopk", {})):
        sae = _fit(tmp_path, x, variant, epochs, batch_size, **options)
        _, mean_cos, best = atom_recovery(sae.W_dec.double().numpy(), coarse)
        out[variant] = (float((best < 16).mean()), mean_cos, _first_prefix_fvu(sae, x, 16))
        print(f"{variant}: coarse in first prefix {out[variant][0]:.3f}, mean max cos {mean_cos:.3f}, "
              f"first-16 FVU {out[variant][2]:.3f}")  # fmt: skip
    return out


def test_planted_hierarchy_puts_the_coarse_atoms_in_the_first_prefix(tmp_path):
    """One of 8 frequent coarse atoms per sample plus rare fine ones (4000 samples, 8 epochs): the
    first prefix holds the coarse atoms and reconstructs the data alone; BatchTopK's first 16
    latents are an arbitrary 16 of 192."""
    result = _hierarchy(tmp_path, 4000, epochs=8, batch_size=128)
    (share, cos, fvu), (control_share, control_cos, control_fvu) = result["prefix_matryoshka"], result["batchtopk"]
    assert share >= 0.75 and control_share <= 0.25
    assert cos >= control_cos + 0.08
    assert fvu < 0.25 and fvu < 0.3 * control_fvu


@pytest.mark.slow
def test_planted_hierarchy_every_coarse_atom_in_the_first_prefix(tmp_path):
    """Trained longer (8000 samples, 15 epochs), every coarse atom's best latent is in the first prefix."""
    result = _hierarchy(tmp_path, 8000, epochs=15, batch_size=256)
    (share, cos, fvu), (_, control_cos, control_fvu) = result["prefix_matryoshka"], result["batchtopk"]
    assert share == 1.0 and cos >= 0.9 and cos >= control_cos + 0.1 and fvu < 0.2 * control_fvu
