"""Seed stability over several seeds (Paulo & Belrose 2025): every pair matched, averaged; 1.0 for a
seed repeated, the planted share for seeds of one configuration, ~0 for unrelated dictionaries."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from sae_helpers import planted, write_store

from msae.cli import main
from msae.config.train import train_config
from msae.metrics.stability import configuration_differences, match_atoms, pairwise_stability
from msae.train import train_sae


def test_pairwise_stability_averages_every_pair_against_brute_force():
    rng = np.random.default_rng(0)
    dictionaries = [torch.tensor(rng.normal(size=(7, 3))) for _ in range(3)]
    result = pairwise_stability(dictionaries, threshold=0.5)
    assert result["n_pairs"] == 3 and [(p["a"], p["b"]) for p in result["pairs"]] == [(0, 1), (0, 2), (1, 2)]
    unit = [d.numpy() / np.linalg.norm(d.numpy(), axis=1, keepdims=True) for d in dictionaries]
    means, shares = [], []
    for i, j in itertools.combinations(range(3), 2):
        cos = unit[i] @ unit[j].T
        best = max(itertools.permutations(range(7)), key=lambda p: sum(cos[r, p[r]] for r in range(7)))
        matched = np.array([cos[r, best[r]] for r in range(7)])
        means.append(matched.mean())
        shares.append((matched > 0.5).mean())
    assert result["mean_cosine"] == pytest.approx(np.mean(means), abs=1e-12)
    assert result["mean_cosine_std"] == pytest.approx(np.std(means), abs=1e-12)
    assert result["fraction_above"] == pytest.approx(np.mean(shares), abs=1e-12)
    assert result["fraction_above_std"] == pytest.approx(np.std(shares), abs=1e-12)


def test_a_permuted_copy_is_perfectly_stable_and_random_dictionaries_are_not():
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(128, 32, generator=gen)
    copies = [w, w[torch.randperm(128, generator=gen)] * 3.0, w[torch.randperm(128, generator=gen)]]
    same = pairwise_stability(copies, threshold=0.7)
    assert same["mean_cosine"] == pytest.approx(1.0) and same["fraction_above"] == 1.0
    assert same["mean_cosine_std"] == pytest.approx(0.0, abs=1e-12)
    others = [torch.randn(128, 32, generator=gen) for _ in range(3)]  # negative control: nothing shared
    random = pairwise_stability(others, threshold=0.7)
    assert random["fraction_above"] < 0.02 and random["mean_cosine"] < 0.5


def test_configuration_differences_ignore_the_seed_and_the_machine():
    base = {
        "variant": "topk",
        "k": 8,
        "training": {"seed": 0, "device": "cpu", "epochs": 30},
        "data": {"path": "a.parquet", "sha256": "x", "rows": 10},
        "final": {"fvu": 0.1},
        "msae_version": "1",
    }
    seed = {**base, "training": {"seed": 1, "device": "cuda:0", "epochs": 30}, "final": {"fvu": 0.2}}
    assert configuration_differences(base, seed) == []
    moved = {**base, "data": {"path": "elsewhere/a.parquet", "sha256": "x", "rows": 10}}
    assert configuration_differences(base, moved) == []
    other = {**base, "k": 16, "training": {"seed": 1, "device": "cpu", "epochs": 20}}
    assert configuration_differences(base, other) == ["k: 8 vs 16", "training.epochs: 30 vs 20"]
    assert configuration_differences(base, {**base, "data": {"sha256": "y"}}) == ["data.sha256: 'x' vs 'y'"]


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    """TopK SAEs with 2x as many latents (192) as planted atoms (96 in 32 dims), seeds 0, 0, 1, 2,
    and one run of another configuration (k = 4)."""
    torch.set_flush_denormal(True)
    root = tmp_path_factory.mktemp("seeds")
    x, atoms = planted(4000, d=32, n_atoms=96, active=3, seed=0)
    path = write_store(root / "planted.parquet", x)
    runs = {}
    for name, seed, k in (("s0", 0, 3), ("s0_again", 0, 3), ("s1", 1, 3), ("s2", 2, 3), ("k4", 1, 4)):
        config = train_config(
            variant="topk",
            embeddings=path,
            out=root / name,
            expansion=6.0,
            k=k,
            epochs=12,
            batch_size=256,
            lr=3e-3,
            seed=seed,
            log_every=50,
            device="cpu",
        )
        runs[name] = train_sae(config, progress=False).out
    return runs, atoms


def test_stability_is_one_for_a_repeated_seed_and_the_planted_share_across_seeds(seeds, tmp_path):
    """Known answer: each seed recovers the 96 planted atoms with 96 of its 192 latents and spends
    the others on arbitrary directions, so about half the atoms are shared across seeds."""
    runs, atoms = seeds
    out = tmp_path / "same.json"
    assert main(["stability", str(runs["s0"]), str(runs["s0_again"]), "--out", str(out)]) == 0
    same = json.loads(out.read_text())
    assert same["mean_cosine"] == pytest.approx(1.0) and same["fraction_above"] == 1.0
    out = tmp_path / "seeds.json"
    assert main(["stability", str(runs["s0"]), str(runs["s1"]), str(runs["s2"]), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    print({k: result[k] for k in ("mean_cosine", "mean_cosine_std", "fraction_above", "fraction_above_std")})
    assert result["seeds"] == [0, 1, 2] and result["n_pairs"] == 3 and result["threshold"] == 0.7
    share = len(atoms) / result["n_latents"][0]  # 0.5
    assert share - 0.05 <= result["fraction_above"] <= share + 0.15
    assert result["mean_cosine"] < 0.9 and result["fraction_above_std"] < 0.1


def test_a_run_of_another_configuration_is_refused_unless_asked(seeds, tmp_path, capsys):
    runs, _ = seeds
    out = tmp_path / "mixed.json"
    assert main(["stability", str(runs["s0"]), str(runs["k4"]), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert "is not a seed of" in error and "k: 3 vs 4" in error
    assert not out.exists()
    assert (
        main(["stability", "--sae-a", str(runs["s0"]), "--sae-b", str(runs["k4"]), "--any-config", "--out", str(out)])
        == 0
    )
    assert json.loads(out.read_text())["n_pairs"] == 1
    assert main(["stability", str(runs["s0"]), "--out", str(out)]) == 2  # one run is not a comparison


def test_match_atoms_is_the_matching_the_stage_averages():
    gen = torch.Generator().manual_seed(5)
    a, b = torch.randn(10, 4, generator=gen), torch.randn(10, 4, generator=gen)
    pair = pairwise_stability([a, b], threshold=0.3)
    matching = match_atoms(a, b)
    assert pair["mean_cosine"] == pytest.approx(matching.mean_cosine())
    assert pair["fraction_above"] == pytest.approx(matching.fraction_above(0.3))


def test_reseed_repeats_a_run_with_only_the_seed_changed(seeds, tmp_path):
    """Reseeding at the run's own seed reproduces it bit for bit (every other option was read back
    from config.json); at another seed, config.json differs in the seed only."""
    from msae.sae import load
    from msae.sae.checkpoint import read_config

    runs, _ = seeds
    assert (
        main(["reseed", "--sae", str(runs["s0"]), "--seed", "0", "--device", "cpu", "--out", str(tmp_path / "r0")]) == 0
    )
    torch.testing.assert_close(load(tmp_path / "r0").W_dec, load(runs["s0"]).W_dec, rtol=0, atol=0)
    assert (
        main(["reseed", "--sae", str(runs["k4"]), "--seed", "7", "--device", "cpu", "--out", str(tmp_path / "r7")]) == 0
    )
    replica, run = read_config(tmp_path / "r7"), read_config(runs["k4"])
    assert replica["training"]["seed"] == 7 and replica["k"] == 4
    assert configuration_differences(run, replica) == []
    assert main(["reseed", "--sae", str(tmp_path / "missing"), "--seed", "1", "--out", str(tmp_path / "x")]) == 2
