"""The shared edit mechanism and concept resolution of msae.probes, against independent computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from probes_planted import COLOURS, N_LATENTS, latents_table, planted_sae

from msae.errors import MsaeError
from msae.probes.concepts import Concept, resolve_concepts, valid_concepts
from msae.probes.intervention import (
    activation_scale,
    dense_columns,
    edit,
    edited_value,
    raw_atoms,
)
from msae.sae import SparseAutoencoder, make_config


def random_sae(seed: int, d: int = 8, n: int = 20) -> SparseAutoencoder:
    """A random SAE with non-trivial mean, scale and biases, so the raw-space mapping matters."""
    torch.manual_seed(seed)
    sae = SparseAutoencoder(make_config("relu", d, n / d, l1=0.0))
    with torch.no_grad():
        sae.W_enc.normal_()
        sae.b_enc.normal_(std=0.3)
        sae.b_pre.normal_()
        sae.set_statistics(torch.randn(d), 1.7)
    return sae.eval()


def decode_difference(sae: SparseAutoencoder, x: np.ndarray, latent: int, new_value: np.ndarray) -> np.ndarray:
    """Independent path: x + decode(z') - decode(z) with the full decoder, in float64."""
    model = SparseAutoencoder(sae.config)
    model.load_state_dict(sae.state_dict())
    model = model.double().eval()
    with torch.no_grad():
        xt = torch.as_tensor(x, dtype=torch.float64)
        z = model.encode_dense(xt)
        z_new = z.clone()
        z_new[:, latent] = torch.as_tensor(new_value, dtype=torch.float64)
        return (xt + model.decode(z_new) - model.decode(z)).numpy()


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    latent=st.integers(0, 19),
    mode=st.sampled_from(["set", "add", "scale"]),
    strength=st.floats(-3, 5, allow_nan=False),
)
def test_edit_equals_decode_difference(seed, latent, mode, strength):
    sae = random_sae(seed)
    x = np.random.default_rng(seed).normal(size=(6, 8)).astype(np.float32)
    z_c = dense_columns(sae, x, [latent])[:, 0]
    new = edited_value(z_c, mode, strength)
    expected = decode_difference(sae, x, latent, new)
    got = edit(x, z_c, raw_atoms(sae, [latent])[0], mode, strength)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_set_mode_moves_by_alpha_minus_z_along_the_raw_atom():
    sae = random_sae(3)
    x = np.random.default_rng(3).normal(size=(5, 8)).astype(np.float32)
    alpha, c = 2.5, 7
    z_c = dense_columns(sae, x, [c])[:, 0]
    atom_raw = sae.W_dec.detach().double().numpy()[c] / 1.7  # W_dec[c] / scale, computed here
    got = edit(x, z_c, raw_atoms(sae, [c])[0], "set", alpha)
    np.testing.assert_allclose(got - x, (alpha - z_c.astype(np.float64))[:, None] * atom_raw[None, :], atol=1e-5)


def test_edited_value_modes_and_clamp():
    z = np.array([0.0, 1.0, 2.0])
    np.testing.assert_array_equal(edited_value(z, "set", 3.0), [3.0, 3.0, 3.0])
    np.testing.assert_array_equal(edited_value(z, "add", 0.5), [0.5, 1.5, 2.5])
    np.testing.assert_array_equal(edited_value(z, "scale", 2.0), [0.0, 2.0, 4.0])
    np.testing.assert_array_equal(edited_value(z, "add", -1.5), [0.0, 0.0, 0.5])  # latents stay >= 0
    with pytest.raises(MsaeError, match="--mode"):
        edited_value(z, "multiply", 1.0)


def test_dense_columns_match_encode_dense_in_batches():
    sae = random_sae(5)
    x = np.random.default_rng(5).normal(size=(37, 8)).astype(np.float32)
    cols = [3, 0, 19]
    with torch.no_grad():
        full = sae.encode_dense(torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(dense_columns(sae, x, cols, batch_rows=10), full[:, cols], rtol=1e-6)


def test_activation_scale_is_the_quantile_of_positive_activations():
    rng = np.random.default_rng(0)
    acts = np.maximum(rng.normal(size=(500, 3)), 0)
    acts[:, 2] = 0.0
    acts[:3, 2] = [1.0, 2.0, 3.0]
    scale = activation_scale(acts, 0.5)
    for j in range(2):
        assert scale[j] == pytest.approx(np.median(acts[acts[:, j] > 0, j]))
    assert scale[2] == pytest.approx(2.0)
    assert np.isnan(activation_scale(np.zeros((4, 1)))[0])


def test_planted_sae_reads_the_planted_coefficients():
    from probes_planted import grid_store

    store = grid_store(per_cell=2)
    z = dense_columns(planted_sae(), store.embeddings, list(range(N_LATENTS)))
    colour = np.asarray([COLOURS.index(c) for c in store.columns["attr_color"]])
    assert (z[:, : len(COLOURS)].argmax(axis=1) == colour).all()


def test_resolve_concepts_by_name_and_id():
    table = latents_table()
    got = resolve_concepts(["RED", "5", "10"], table, N_LATENTS)
    assert got[0] == Concept(0, "red", "color")
    assert got[1] == Concept(5, "circle", "shape")
    assert got[2] == Concept(10, "latent10", "")  # not valid: its name is not trusted
    assert got[0].key == "red" and got[0].label == "red (#0)"
    assert [c.latent for c in valid_concepts(table, N_LATENTS)] == list(range(8))


def test_resolve_concepts_prefers_the_best_scoring_latent_of_a_repeated_name():
    table = latents_table()
    table.loc[3, "name"] = "red"  # latent 3 also called red, with a lower score than latent 0
    assert resolve_concepts(["red"], table, N_LATENTS)[0].latent == 0
    table.loc[3, "score"] = 2.0
    assert resolve_concepts(["red"], table, N_LATENTS)[0].latent == 3


@pytest.mark.parametrize(
    "specs, message",
    [
        (["magenta"], "no valid latent has this name"),
        (["noise0"], "no valid latent has this name"),
        (["12"], "out of range"),
        (["red", "0"], "already given"),
        ([], "at least one"),
    ],
)
def test_resolve_concepts_errors(specs, message):
    with pytest.raises(MsaeError, match=message):
        resolve_concepts(specs, latents_table(), N_LATENTS)


def test_names_need_the_concepts_table():
    with pytest.raises(MsaeError, match="needs --concepts"):
        resolve_concepts(["red"], None, N_LATENTS)


def test_store_must_match_the_sae(tmp_path):
    from msae.sae.provenance import DataProvenance, RunRecord

    sae = planted_sae()
    meta = {"model": "planted", "pretrained": "none", "dim": 24, "modality": "image"}
    sae.record = RunRecord(tmp_path, DataProvenance("train.parquet", "0" * 64, model="planted", pretrained="none"))
    sae.require_compatible(meta, "s.parquet")
    with pytest.raises(MsaeError, match="dim 16"):
        sae.require_compatible({**meta, "dim": 16}, "s.parquet")
    sae.record = RunRecord(tmp_path, DataProvenance("train.parquet", "0" * 64, model="ViT-B-32", pretrained="openai"))
    with pytest.raises(MsaeError, match="trained on ViT-B-32/openai"):
        sae.require_compatible(meta, "s.parquet")
    with pytest.raises(MsaeError, match="expected text embeddings here"):
        sae.require_compatible(meta, "s.parquet", modality="text")


def test_auto_concepts_match_a_brute_force_choice():
    import pandas as pd

    rng = np.random.default_rng(3)
    names = ["red", "red", "blue", "star", "green", "", "circle"]
    attrs = ["color", "color", "color", "shape", "color", "", "shape"]
    table = pd.DataFrame(
        {
            "latent": np.arange(len(names)),
            "name": names,
            "attribute": attrs,
            "valid": [True, True, True, True, False, False, True],
            "score": rng.random(len(names)),
            "frequency": rng.random(len(names)),
        }
    )
    got = resolve_concepts(["auto:3:color"], table, 100)
    # Brute force: valid named rows, colour first, best score first, one latent per name.
    rows = [r for r in table.itertuples() if r.valid and r.name]
    rows.sort(key=lambda r: (r.attribute != "color", -r.score, r.latent))
    seen, expected = set(), []
    for r in rows:
        if r.name not in seen:
            seen.add(r.name)
            expected.append(int(r.latent))
    assert [c.latent for c in got] == expected[:3]
    assert [c.attribute for c in got][:2] == ["color", "color"]
    # No valid concept at all: fall back to the most frequent latents, still a usable probe.
    table["valid"] = False
    fallback = resolve_concepts(["auto:2"], table, 100)
    assert [c.latent for c in fallback] == list(table.sort_values("frequency", ascending=False)["latent"][:2])
    with pytest.raises(MsaeError, match="auto needs --concepts"):
        resolve_concepts(["auto:2"], None, 100)
