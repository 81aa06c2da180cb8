"""End-to-end concepts stage on a planted world: concept latents whose atoms are the (centred)
embeddings of known words, random latents, images with a known dominant word, captions."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from msae.concepts import extract_concepts
from msae.config.concepts import ConceptsConfig
from msae.errors import MsaeError
from msae.sae import SparseAutoencoder, make_config, save
from msae.store import write_embeddings

WORDS = ("red", "green", "blue", "yellow", "purple", "orange")
BACKBONE = {"model": "toy-clip", "pretrained": "planted"}
D = 24
N_RANDOM = 4


def _meta(modality: str, split: str) -> dict:
    return {**BACKBONE, "modality": modality, "dataset": "planted", "split": split}


def build_world(tmp_path, n_images: int = 600, n_distractors: int = 120, seed: int = 0, paths: bool = False):
    """Write a vocabulary store, an image store (with captions and attr_color) and an SAE whose
    first len(WORDS) latents are the planted words and whose last N_RANDOM latents are random."""
    rng = np.random.default_rng(seed)
    text_mean = rng.normal(size=D) * 3.0  # the modality gap: text and images sit far apart
    image_mean = rng.normal(size=D) * 3.0
    concept = np.linalg.qr(rng.normal(size=(D, len(WORDS))))[0].T  # orthonormal concept directions
    distract = rng.normal(size=(n_distractors, D))
    distract = distract / np.linalg.norm(distract, axis=1, keepdims=True)
    vocab_terms = list(WORDS) + [f"word{i:03d}" for i in range(n_distractors)]
    vocab = text_mean + np.vstack([concept, distract]) * 1.0
    vocab_ids = vocab_terms
    vocab_path = tmp_path / "vocab.parquet"
    write_embeddings(vocab_path, vocab_ids, vocab, _meta("text", "vocab"), {"text": vocab_terms})

    colour = rng.integers(len(WORDS), size=n_images)
    amp = rng.uniform(1.5, 2.5, size=n_images)
    images = image_mean + amp[:, None] * concept[colour] + 0.15 * rng.normal(size=(n_images, D))
    columns = {
        "attr_color": [WORDS[c] for c in colour],
        "text": [f"a {WORDS[c]} thing" for c in colour],
    }
    if paths:
        from PIL import Image

        folder = tmp_path / "img"
        folder.mkdir()
        files = []
        for i, c in enumerate(colour):
            f = folder / f"{i}.png"
            Image.new("RGB", (8, 8), (40 * c, 255 - 40 * c, 100)).save(f)
            files.append(str(f))
        columns["path"] = files
    image_path = tmp_path / "images.parquet"
    ids = [f"img-{i:05d}" for i in range(n_images)]
    write_embeddings(image_path, ids, images, _meta("image", "train"), columns)

    centred = vocab[: len(WORDS)] - vocab.mean(0)
    atoms = np.vstack([centred / np.linalg.norm(centred, axis=1, keepdims=True), _random_unit(rng, N_RANDOM)])
    sae = planted_sae(atoms, image_mean, scale=0.5)
    sae_dir = tmp_path / "sae"
    save(sae, sae_dir, {"data": {**BACKBONE, "modality": "image", "dataset": "planted", "split": "train"}})
    return sae_dir, vocab_path, image_path


def _random_unit(rng: np.random.Generator, n: int) -> np.ndarray:
    g = rng.normal(size=(n, D))
    return g / np.linalg.norm(g, axis=1, keepdims=True)


def planted_sae(atoms: np.ndarray, mean: np.ndarray, scale: float, bias: float = -0.3) -> SparseAutoencoder:
    """An SAE whose decoder rows are `atoms` (processed space) with a tied encoder."""
    n, d = atoms.shape
    sae = SparseAutoencoder(make_config("relu", d, n / d))
    with torch.no_grad():
        w = torch.tensor(atoms, dtype=torch.float32)
        sae.W_dec.copy_(w)
        sae.W_enc.copy_(w.T)
        sae.b_enc.fill_(bias)
        sae.b_pre.zero_()
    sae.set_statistics(torch.tensor(mean, dtype=torch.float32), scale)
    return sae.eval()


def test_planted_world_is_named_validated_and_scored(tmp_path):
    sae_dir, vocab, images = build_world(tmp_path)
    out = tmp_path / "out"
    summary = extract_concepts(
        ConceptsConfig(sae=sae_dir, vocab=vocab, images=images, out=out, null_samples=300, device="cpu")
    )
    latents = pd.read_parquet(out / "latents.parquet")
    k = len(WORDS)
    assert latents["name"].tolist()[:k] == list(WORDS)
    assert latents["valid"].tolist()[:k] == [True] * k
    assert not latents["valid"].iloc[k:].any(), latents.iloc[k:]
    assert summary["valid_concepts"] == k
    assert summary["distinct_latents"] == k  # the random atoms fail rule 2 (no better than chance)
    assert summary["named_precision"] == pytest.approx(1.0)
    assert summary["coverage_color"] == pytest.approx(1.0)
    assert json.loads((out / "summary.json").read_text())["valid_concepts"] == k
    names = pd.read_parquet(out / "names.parquet")
    assert list(names.columns) == ["latent", "term", "score", "rank", "frequency"]
    assert len(names) == 5 * (k + N_RANDOM)


def test_activation_naming_without_captions_finds_the_same_concepts(tmp_path):
    sae_dir, vocab, images = build_world(tmp_path)
    from msae.store import read_embeddings

    s = read_embeddings(images)
    write_embeddings(images, s.ids, s.embeddings, s.meta, s.columns.drop(columns=["text"]))
    summary = extract_concepts(
        ConceptsConfig(
            sae=sae_dir,
            vocab=vocab,
            images=images,
            out=tmp_path / "out",
            method="activation",
            null_samples=300,
            device="cpu",
        )
    )
    latents = pd.read_parquet(tmp_path / "out" / "latents.parquet")
    k = len(WORDS)
    assert summary["agreement"] == "embeddings"
    assert latents["name"].tolist()[:k] == list(WORDS)
    assert latents["valid"].tolist() == [True] * k + [False] * N_RANDOM
    assert (latents["score"] >= 0).all()  # activations


def test_galleries_and_index_sorted_by_frequency(tmp_path):
    sae_dir, vocab, images = build_world(tmp_path, n_images=120, paths=True)
    out = tmp_path / "out"
    (out / "galleries").mkdir(parents=True)
    (out / "galleries" / "latent_000999.png").write_bytes(b"a page of an earlier run")
    extract_concepts(
        ConceptsConfig(
            sae=sae_dir,
            vocab=vocab,
            images=images,
            out=out,
            null_samples=100,
            latents=[len(WORDS) + 1],
            gallery_limit=3,
            top_images=4,
            min_active=3,
            device="cpu",
        )
    )
    latents = pd.read_parquet(out / "latents.parquet")
    pages = sorted(p.name for p in (out / "galleries").glob("*.png"))
    valid_by_freq = (
        latents[latents["valid"]].sort_values("frequency", ascending=False, kind="stable")["latent"].tolist()[:3]
    )
    expected = {f"latent_{j:06d}.png" for j in [*valid_by_freq, len(WORDS) + 1]}
    assert set(pages) == expected
    html = (out / "index.html").read_text()
    positions = [html.index(f"galleries/latent_{j:06d}.png") for j in valid_by_freq]
    assert positions == sorted(positions)
    assert "http" not in html  # self-contained
    from PIL import Image

    with Image.open(out / "galleries" / pages[0]) as img:
        assert img.size[0] > 300


def _rewrite_meta(path, **changes):
    from msae.store import read_embeddings

    s = read_embeddings(path)
    write_embeddings(path, s.ids, s.embeddings, {**s.meta, **changes}, s.columns)


def test_vocabulary_from_another_backbone_is_refused_naming_both(tmp_path):
    sae_dir, vocab, images = build_world(tmp_path, n_images=50)
    _rewrite_meta(vocab, model="ViT-B-32", pretrained="openai")
    with pytest.raises(MsaeError, match=r"ViT-B-32/openai.*toy-clip/planted"):
        extract_concepts(ConceptsConfig(sae=sae_dir, vocab=vocab, images=images, out=tmp_path / "out", device="cpu"))
    assert not (tmp_path / "out" / "summary.json").exists()


def test_bad_inputs_are_named(tmp_path):
    sae_dir, vocab, images = build_world(tmp_path, n_images=50)
    with pytest.raises(MsaeError, match="expected text embeddings here"):
        extract_concepts(ConceptsConfig(sae=sae_dir, vocab=images, images=images, out=tmp_path / "out", device="cpu"))
    with pytest.raises(MsaeError, match="--latents 99"):
        extract_concepts(
            ConceptsConfig(sae=sae_dir, vocab=vocab, images=images, out=tmp_path / "out", latents=[99], device="cpu")
        )
    with pytest.raises(MsaeError, match="no config.json"):
        extract_concepts(ConceptsConfig(sae=tmp_path, vocab=vocab, images=images, out=tmp_path / "out", device="cpu"))
    other = tmp_path / "other.parquet"
    write_embeddings(other, ["a"], np.zeros((1, D + 1)), _meta("text", "vocab"))
    with pytest.raises(MsaeError, match=f"dim {D + 1} but the SAE expects d={D}"):
        extract_concepts(ConceptsConfig(sae=sae_dir, vocab=other, images=images, out=tmp_path / "out", device="cpu"))
    captions = tmp_path / "captions.parquet"
    write_embeddings(captions, ["nope"], np.zeros((1, D)), _meta("text", "train"), {"text": ["a red thing"]})
    with pytest.raises(MsaeError, match="no caption id matches"):
        extract_concepts(
            ConceptsConfig(
                sae=sae_dir, vocab=vocab, images=images, out=tmp_path / "out", captions=captions, device="cpu"
            )
        )


def test_concepts_command_end_to_end(tmp_path, capsys):
    from msae.cli import main

    sae_dir, vocab, images = build_world(tmp_path, n_images=200)
    out = tmp_path / "out"
    code = main(
        [
            "concepts",
            "--sae",
            str(sae_dir),
            "--vocab",
            str(vocab),
            "--images",
            str(images),
            "--out",
            str(out),
            "--null-samples",
            "100",
            "--top-terms",
            "3",
            "--device",
            "cpu",
            "--latents",
            "1,2",
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert json.loads((out / "summary.json").read_text())["valid_concepts"] == len(WORDS)
    assert pd.read_parquet(out / "names.parquet")["rank"].max() == 3
    assert (
        main(
            [
                "concepts",
                "--sae",
                str(sae_dir),
                "--vocab",
                str(vocab),
                "--images",
                str(images),
                "--out",
                str(out),
                "--top-images",
                "0",
            ]
        )
        == 2
    )
    assert "--top-images" in capsys.readouterr().err
