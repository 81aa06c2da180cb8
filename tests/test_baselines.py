"""Classic dictionary baselines (`msae baseline`): each reconstructs a planted set it can represent
exactly, its coder equals scikit-learn's own transform, it loads with `msae.sae.load`, and it
flows through evaluate, concepts and the report like a trained SAE."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from sae_helpers import atom_recovery, random_dictionary, write_store
from test_concepts_pipeline import WORDS, build_world

from msae.baselines.config import BaselineConfig
from msae.baselines.fit import fit_baseline
from msae.baselines.variant import Baseline
from msae.cli import main
from msae.config.base import ConfigError
from msae.config.evaluate import EvaluateConfig
from msae.config.train import make_config
from msae.evaluation import evaluate_run
from msae.sae import load

D = 32


def _fit(tmp_path, x: np.ndarray, method: str, **options):
    name = f"{method}_{options.get('components')}"
    path = write_store(tmp_path / f"{name}.parquet", x.astype(np.float32))
    fit_baseline(BaselineConfig(embeddings=path, out=tmp_path / name, method=method, **options))
    return load(tmp_path / name)


def _processed(sae, x: np.ndarray) -> np.ndarray:
    return ((x - sae.mean.double().numpy()) * sae.scale.item()).astype(np.float64)


def _fvu(sae, x: np.ndarray) -> float:
    with torch.no_grad():
        x_hat = sae.decode(sae.encode(torch.from_numpy(x.astype(np.float32)))).double().numpy()
    return float(np.square(x_hat - x).sum() / np.square(x - x.mean(0)).sum())


def _low_rank(rng: np.random.Generator, n: int, rank: int, noise: float = 1e-3) -> np.ndarray:
    basis = np.linalg.qr(rng.normal(size=(D, rank)))[0].T
    return 5.0 + rng.normal(size=(n, rank)) * np.linspace(3, 1, rank) @ basis + noise * rng.normal(size=(n, D))


def test_pca_reconstructs_a_low_rank_set_as_scikit_learn_does(tmp_path):
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(0)
    x = _low_rank(rng, 2000, rank=6)
    sae = _fit(tmp_path, x, "pca", components=6)
    assert sae.config.n_latents == 12 and isinstance(sae.kind, Baseline)
    assert _fvu(sae, x) < 1e-5  # rank 6 + noise 1e-3: all but the noise
    assert _fvu(_fit(tmp_path, x, "pca", components=3), x) > 0.05  # three of six directions are not enough
    xt = _processed(sae, x)
    reference = PCA(n_components=6).fit(xt)
    ours = sae.decode_processed(sae.encode(torch.from_numpy(x.astype(np.float32)))).double().numpy()
    np.testing.assert_allclose(ours, reference.inverse_transform(reference.transform(xt)), atol=2e-4)
    with torch.no_grad():  # the +/- split: ReLU of the signed code is the dense path too
        z = sae.encode(torch.from_numpy(x[:50].astype(np.float32)))
        torch.testing.assert_close(z, sae.encode_dense(torch.from_numpy(x[:50].astype(np.float32))))
    assert int((z > 0).sum(1).max()) == 6


@pytest.mark.parametrize("method", ["pca", "dictionary"])
def test_the_same_fit_writes_the_same_files(tmp_path, method):
    """A pipeline reruns a baseline only when its inputs change, and the two tools must agree on
    its outputs: a refit with the same options and seed gives byte-identical files."""
    x = _low_rank(np.random.default_rng(3), 300, rank=4, noise=0.1).astype(np.float32)
    path = write_store(tmp_path / "x.parquet", x)
    options = {"components": 4, "seed": 0} | ({"k": 2, "max_iter": 2} if method == "dictionary" else {})
    for name in ("a", "b"):
        fit_baseline(BaselineConfig(embeddings=path, out=tmp_path / name, method=method, **options))
    for file in ("config.json", "model.safetensors"):
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes(), file


def test_ica_recovers_the_mixing_of_planted_independent_sources(tmp_path):
    rng = np.random.default_rng(1)
    mixing = rng.normal(size=(5, D))
    x = rng.laplace(size=(4000, 5)) @ mixing + 2.0
    sae = _fit(tmp_path, x, "ica", components=5, max_iter=400)
    assert _fvu(sae, x) < 1e-6
    atoms = sae.W_dec.double().numpy()[:5] / sae.scale.item()  # raw-space directions of the + half
    recovered, mean_cos, _ = atom_recovery(np.vstack([atoms, -atoms]), mixing / np.linalg.norm(mixing, axis=1)[:, None])
    assert recovered == 1.0 and mean_cos > 0.99


def test_kmeans_codes_the_nearest_planted_centre(tmp_path):
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(2)
    centres = rng.normal(size=(8, D)) * 4
    which = rng.integers(0, 8, 3000)
    x = centres[which] + 0.05 * rng.normal(size=(3000, D))
    sae = _fit(tmp_path, x, "kmeans", components=8)
    z = sae.encode(torch.from_numpy(x.astype(np.float32))).numpy()
    assert ((z > 0).sum(1) == 1).all()
    assert _fvu(sae, x) < 2e-3  # only the noise is lost
    reference = KMeans(n_clusters=8, n_init=1, random_state=0).fit(_processed(sae, x))
    assert pd.crosstab(z.argmax(1), reference.predict(_processed(sae, x))).gt(0).sum().eq(1).all()
    assert pd.crosstab(z.argmax(1), which).gt(0).sum().eq(1).all()  # one latent per planted centre


def test_dictionary_learning_codes_with_omp_like_scikit_learn_and_finds_planted_atoms(tmp_path):
    """Signed sparse codes (3 of 48 unit atoms in 32 dims, the model dictionary learning assumes):
    the learned atoms (with their negatives, as the +/- split stores them) recover the planted ones."""
    from sklearn.decomposition import sparse_encode

    rng = np.random.default_rng(3)
    atoms = random_dictionary(48, D, rng)
    codes = np.zeros((3000, 48))
    chosen = np.argsort(rng.random((3000, 48)), axis=1)[:, :3]
    np.put_along_axis(codes, chosen, rng.uniform(0.5, 1.5, (3000, 3)) * rng.choice([-1, 1], (3000, 3)), axis=1)
    x = codes @ atoms + 2.0
    sae = _fit(tmp_path, x, "dictionary", components=48, k=3)
    assert sae.config.n_latents == 96
    z = sae.encode(torch.from_numpy(x[:300].astype(np.float32))).double().numpy()
    assert ((z > 0).sum(1) <= 3).all()
    dictionary = sae.W_dec.double().numpy()
    expected = sparse_encode(_processed(sae, x[:300]), dictionary[:48], algorithm="omp", n_nonzero_coefs=3)
    np.testing.assert_allclose(z[:, :48] - z[:, 48:], expected, atol=1e-4)
    recovered, mean_cos, _ = atom_recovery(dictionary, atoms)
    print(f"dictionary learning: recovered {recovered:.3f}, mean max cos {mean_cos:.3f}, FVU {_fvu(sae, x):.4f}")
    assert recovered >= 0.85 and mean_cos > 0.95 and _fvu(sae, x) < 0.1


def test_nmf_codes_are_scikit_learns_non_negative_least_squares(tmp_path):
    from sklearn.decomposition import non_negative_factorization

    rng = np.random.default_rng(4)
    atoms = rng.uniform(0, 1, size=(5, D))
    x = rng.uniform(0, 1, size=(2000, 5)) @ atoms - 1.0  # non-negative only after the shift
    sae = _fit(tmp_path, x, "nmf", components=5, max_iter=500)
    assert _fvu(sae, x) < 5e-3  # rank 5 up to the shift by the per-dimension minimum
    assert _fvu(_fit(tmp_path, x, "nmf", components=2, max_iter=500), x) > 0.1
    xt = _processed(sae, x[:200]) - sae.b_pre.double().numpy()
    w, _, _ = non_negative_factorization(
        np.clip(xt, 0, None), H=sae.W_dec.double().numpy(), n_components=5, update_H=False, max_iter=2000, tol=1e-10
    )
    z = sae.encode(torch.from_numpy(x[:200].astype(np.float32))).double().numpy()
    np.testing.assert_allclose(z, w, atol=1e-3)


def test_options_are_checked_and_train_refuses_the_baseline_kind(tmp_path):
    with pytest.raises(ConfigError, match="k"):
        BaselineConfig(embeddings="x", out="y", method="dictionary", components=8)
    with pytest.raises(ConfigError, match="only method dictionary"):
        BaselineConfig(embeddings="x", out="y", method="pca", components=8, k=2)
    with pytest.raises(ConfigError, match="more than the 8 atoms"):
        BaselineConfig(embeddings="x", out="y", method="dictionary", components=8, k=9)
    with pytest.raises(ConfigError, match="--variant: choose one of relu") as refused:  # `msae train` never offers it
        make_config("baseline", D, 2)
    assert "baseline" not in str(refused.value)
    x = np.random.default_rng(5).normal(size=(100, D))
    path = write_store(tmp_path / "x.parquet", x.astype(np.float32))
    assert (
        main(
            [
                "baseline",
                "--embeddings",
                str(path),
                "--method",
                "pca",
                "--components",
                "40",
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )


def test_a_baseline_flows_through_evaluate_concepts_and_the_report(tmp_path):
    """k-means on a planted world of colour clusters: each centroid is one colour, so concept
    naming finds the colour words, and the report lists the baseline beside an SAE."""
    sae_dir, vocab, images = build_world(tmp_path, n_images=600)
    runs = tmp_path / "results" / "sae"
    base = runs / "baseline-kmeans"
    assert main(["baseline", "--embeddings", str(images), "--method", "kmeans", "--components", str(len(WORDS)), "--out", str(base)]) == 0  # fmt: skip
    config = json.loads((base / "config.json").read_text())
    assert config["variant"] == "baseline" and config["method"] == "kmeans" and config["data"]["rows"] == 600
    ev = tmp_path / "results" / "eval" / "baseline-kmeans"
    evaluate_run(EvaluateConfig(sae=base, embeddings=images, cknna_batch=300, out=ev))
    metrics = json.loads((ev / "metrics.json").read_text())
    assert metrics["sparse"]["active"] == pytest.approx(1.0) and metrics["sparse"]["fvu"] < 0.1
    concepts = tmp_path / "results" / "concepts" / "baseline-kmeans"
    assert main(["concepts", "--sae", str(base), "--vocab", str(vocab), "--images", str(images), "--null-samples", "200", "--device", "cpu", "--out", str(concepts)]) == 0  # fmt: skip
    latents = pd.read_parquet(concepts / "latents.parquet")
    assert sorted(latents["name"]) == sorted(WORDS)  # one colour per centroid
    assert latents["valid"].sum() >= len(WORDS) // 2  # rule 2 is calibrated on this world's own null
    import shutil

    shutil.copytree(sae_dir, runs / "planted_relu")
    evaluate_run(
        EvaluateConfig(sae=runs / "planted_relu", embeddings=images, cknna_batch=300, out=ev.parent / "planted_relu")
    )
    out = tmp_path / "results" / "report"
    assert main(["report", "--runs", str(runs), "--eval", str(tmp_path / "results" / "eval"), "--concepts", str(tmp_path / "results" / "concepts"), "--probes", str(tmp_path / "none"), "--out", str(out)]) == 0  # fmt: skip
    table = (out / "table.md").read_text()
    assert "baseline-kmeans" in table and "k-means, 6 clusters" in table
    pareto = pd.read_csv(out / "pareto.csv")
    assert "baseline-kmeans" in set(pareto["run"])
