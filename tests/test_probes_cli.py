"""`msae probe similarity|bias` end to end on planted files, and their bad-input errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from probes_planted import biased_store, grid_store, latents_table, write_sae, write_store

from msae.cli import main
from msae.identity import identity_block


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe")
    store = grid_store(per_cell=4)
    images = root / "images"
    images.mkdir()
    paths = []
    for i, colour in enumerate(store.columns["attr_color"]):  # a tiny image per item, for the strips
        path = images / f"{i}.png"
        Image.new(
            "RGB",
            (8, 8),
            {"red": (220, 0, 0), "green": (0, 200, 0), "blue": (0, 0, 220), "yellow": (230, 230, 0)}[colour],
        ).save(path)
        paths.append(f"images/{i}.png")
    store.columns["path"] = paths
    out = {
        "sae": write_sae(root / "sae"),
        "grid": write_store(store, root / "grid.parquet"),
        "train": write_store(biased_store(800, 0.9, seed=1, split="bias_train"), root / "bias_train.parquet"),
        "test": write_store(biased_store(400, None, seed=2, split="test"), root / "test.parquet"),
        "root": root,
    }
    latents_table().to_parquet(root / "latents.parquet")
    out["latents"] = root / "latents.parquet"
    return out


def _similarity(files, out, *extra):
    return main(
        [
            "probe",
            "similarity",
            "--sae",
            str(files["sae"]),
            "--embeddings",
            str(files["grid"]),
            "--concepts",
            str(files["latents"]),
            "--out",
            str(out),
            "--device",
            "cpu",
            *extra,
        ]
    )


def _bias(files, out, *extra):
    return main(
        [
            "probe",
            "bias",
            "--sae",
            str(files["sae"]),
            "--train",
            str(files["train"]),
            "--test",
            str(files["test"]),
            "--out",
            str(out),
            "--device",
            "cpu",
            *extra,
        ]
    )


def test_similarity_writes_neighbours_strips_curves_and_summary(files, tmp_path):
    blue = "item-0032"  # rows 32.. are blue (4 colours x 4 shapes x 4 items, blue third)
    out = tmp_path / "similarity"
    code = _similarity(
        files,
        out,
        "--queries",
        f"{blue},item-0040",
        "--concept",
        "red",
        "--concept",
        "1",
        "--alphas",
        "0,1,4",
        "--top",
        "4",
        "--image-root",
        str(files["root"]),
    )
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    identity = summary.pop("identity")  # the hashes of what it was computed from (msae.identity)
    assert identity == identity_block(files["sae"], embeddings=files["grid"], concepts=files["latents"])
    assert all(isinstance(v, (int, float)) for v in summary.values())
    assert summary["red_concept_frac_top"] >= 0.8 and summary["green_concept_frac_top"] >= 0.8
    neighbours = json.loads((out / "neighbours.json").read_text())
    first = neighbours["queries"][0]
    assert first["id"] == blue and blue not in first["original"]["ids"]
    assert [b["alpha"] for b in first["concepts"]["red"]] == [0.0, 1.0, 4.0]
    assert len(first["concepts"]["red"][-1]["ids"]) == 4
    assert (out / "curves.png").stat().st_size > 0
    strips = sorted(p.name for p in (out / "strips").iterdir())
    assert strips == [f"{q}__{c}.png" for q in ("item-0032", "item-0040") for c in ("green", "red")]


def test_similarity_random_queries_are_seeded(files, tmp_path):
    args = ("--queries", "random:3", "--concept", "red", "--alphas", "0,4", "--max-strips", "0")
    assert _similarity(files, tmp_path / "a", *args) == 0
    assert _similarity(files, tmp_path / "b", *args) == 0
    ids = [json.loads((tmp_path / d / "neighbours.json").read_text())["queries"] for d in "ab"]
    assert [q["id"] for q in ids[0]] == [q["id"] for q in ids[1]] and len(ids[0]) == 3


def test_bias_writes_ranked_concepts(files, tmp_path):
    out = tmp_path / "bias"
    code = _bias(
        files,
        out,
        "--concepts",
        str(files["latents"]),
        "--target-column",
        "attr_shape",
        "--positive",
        "star",
        "--spurious",
        "attr_color=red",
    )
    assert code == 0
    report = json.loads((out / "bias.json").read_text())
    assert report["concepts"][0]["name"] == "red"
    assert report["spurious"]["column"] == "attr_color" and not report["spurious"]["inferred"]
    assert set(report["group_sizes"]) == {"all", "correlated", "anti"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["spurious_rank_in_attribute"] == 1.0 and summary["spurious_flip_rate_anti"] > 0.1
    assert (out / "bias.png").stat().st_size > 0


def test_bias_without_concepts_uses_active_latents(files, tmp_path):
    out = tmp_path / "bias"
    assert _bias(files, out, "--target-column", "attr_shape", "--positive", "star", "--min-frequency", "0.05") == 0
    report = json.loads((out / "bias.json").read_text())
    assert sorted(c["latent"] for c in report["concepts"]) == list(range(8))  # the spare latents never fire
    assert report["spurious"]["value"] == "red" and report["spurious"]["inferred"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--queries", "item-0000,missing-id", "--concept", "red"], "not in the embedding store: missing-id"),
        (["--queries", "item-0000", "--concept", "magenta"], "no valid latent has this name"),
        (["--queries", "item-0000", "--concept", "99"], "out of range"),
        (["--queries", "random:0", "--concept", "red"], "random:0"),
        (["--concept", "red"], "give at least one query"),
        (["--queries", "item-0000", "--concept", "red", "--alphas", "2,1"], "strictly increasing"),
    ],
)
def test_similarity_bad_input_writes_nothing(files, tmp_path, capsys, args, message):
    out = tmp_path / "similarity"
    assert _similarity(files, out, *args) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--target-column", "attr_missing"], "no column 'attr_missing'"),
        (["--target-column", "attr_shape"], "not binary"),
        (["--target-column", "attr_shape", "--positive", "hexagon"], "one class only"),
        (
            ["--target-column", "attr_shape", "--positive", "star", "--candidates", "magenta", "--concepts", "LATENTS"],
            "no valid latent has this name",
        ),
        (["--target-column", "attr_shape", "--positive", "star", "--spurious", "attr_color=magenta"], "never occurs"),
    ],
)
def test_bias_bad_input_writes_nothing(files, tmp_path, capsys, args, message):
    out = tmp_path / "bias"
    args = [str(files["latents"]) if a == "LATENTS" else a for a in args]
    assert _bias(files, out, *args) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_mismatched_backbone_is_refused(files, tmp_path, capsys):
    from msae.store import read_embeddings, write_embeddings

    store = read_embeddings(files["grid"])
    other = write_embeddings(
        tmp_path / "other.parquet",
        store.ids,
        store.embeddings,
        {**store.meta, "model": "ViT-B-32", "pretrained": "openai"},
        store.columns,
    )
    code = main(
        [
            "probe",
            "similarity",
            "--sae",
            str(files["sae"]),
            "--embeddings",
            str(other),
            "--queries",
            "item-0000",
            "--concept",
            "0",
            "--out",
            str(tmp_path / "o"),
            "--device",
            "cpu",
        ]
    )
    assert code == 2 and "trained on planted/none" in capsys.readouterr().err
    assert np.isfinite(store.embeddings).all()


def test_query_images_are_embedded_with_the_store_backbone(files, tmp_path, monkeypatch):
    """The image path up to the backbone: a stand-in backbone maps any image to item-0032's vector."""
    import torch

    import msae.backbone
    from msae.store import read_embeddings

    store = read_embeddings(files["grid"])
    target = torch.tensor(store.embeddings[32])
    asked = {}

    class StandIn:
        def preprocess(self, image):
            return torch.zeros(3, 4, 4)

        def encode_images(self, pixels):
            return target.repeat(len(pixels), 1)

    def load(name, pretrained, device="auto"):
        asked["backbone"] = (name, pretrained)
        return StandIn()

    monkeypatch.setattr(msae.backbone, "load_backbone", load)
    query = files["root"] / "images" / "0.png"
    out = tmp_path / "similarity"
    assert (
        _similarity(
            files,
            out,
            "--query-images",
            str(query),
            "--concept",
            "red",
            "--alphas",
            "0,4",
            "--image-root",
            str(files["root"]),
        )
        == 0
    )
    assert asked["backbone"] == ("planted", "none")
    first = json.loads((out / "neighbours.json").read_text())["queries"][0]
    assert first["id"] == "0.png" and not first["in_store"]
    assert first["original"]["ids"][0] == "item-0032" and first["original"]["scores"][0] == pytest.approx(1.0, abs=1e-5)
    assert (out / "strips" / "0.png__red.png").exists()
    assert _similarity(files, tmp_path / "bad", "--query-images", str(tmp_path / "nope.png"), "--concept", "red") == 2
    assert not (tmp_path / "bad").exists()
