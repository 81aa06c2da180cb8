"""Concept-controlled similarity search on planted data with a known answer."""

from __future__ import annotations

import numpy as np
import pytest
from probes_planted import COLOURS, N_LATENTS, grid_store, latents_table, planted_sae

from msae.errors import MsaeError
from msae.probes import similarity as sim
from msae.probes.concepts import resolve_concepts


def brute_force_nearest(vectors, database, exclude, top):
    """Loop over every pair in float64; ties broken by row index."""
    out_rows, out_scores = [], []
    for i, v in enumerate(vectors.astype(np.float64)):
        scored = []
        for r, e in enumerate(database.astype(np.float64)):
            if r == exclude[i]:
                continue
            scored.append((-(v @ e) / (np.linalg.norm(v) * np.linalg.norm(e)), r))
        scored.sort()
        out_rows.append([r for _, r in scored[:top]])
        out_scores.append([-s for s, _ in scored[:top]])
    return np.asarray(out_rows), np.asarray(out_scores)


def test_nearest_matches_brute_force():
    rng = np.random.default_rng(0)
    database = rng.normal(size=(60, 7)).astype(np.float32)
    vectors = rng.normal(size=(5, 7))
    exclude = np.array([3, -1, 59, 0, -1])
    got = sim.nearest(vectors, sim.normalise(database), exclude, top=9)
    rows, scores = brute_force_nearest(vectors, database, exclude, 9)
    np.testing.assert_array_equal(got.rows, rows)
    np.testing.assert_allclose(got.scores, scores, rtol=1e-5)


def test_nearest_caps_top_at_the_database_size():
    database = sim.normalise(np.eye(4, dtype=np.float32))
    got = sim.nearest(np.eye(4)[:1], database, np.array([0]), top=10)
    assert got.rows.shape == (1, 3) and 0 not in got.rows


def _blue_queries(store, every=5):
    ids = [i for i, c in zip(store.ids, store.columns["attr_color"]) if c == "blue"]
    return sim.Queries.from_store(store, ids[::every])


@pytest.fixture(scope="module")
def planted_result():
    store = grid_store(per_cell=10)
    concepts = resolve_concepts(["red", "green", "yellow"], latents_table(), N_LATENTS)
    return store, sim.search(planted_sae(), store, _blue_queries(store), concepts, alphas=[0, 0.5, 1, 2, 4], top=8)


def test_raising_a_planted_colour_moves_neighbours_to_it_monotonically(planted_result):
    store, result = planted_result
    for key in ("red", "green", "yellow"):
        curve = result.curves[key]
        assert curve["original_concept_frac"] == 0.0  # blue queries: neighbours are blue
        assert curve["concept_frac"][0] == 0.0  # alpha 0 on a concept the query lacks changes nothing
        assert sim.is_monotone(curve["concept_frac"])
        assert curve["concept_frac"][-1] >= 0.8
        assert curve["keep"]["shape"][-1] >= 0.75  # the query's shape is kept


def test_curves_recomputed_from_the_neighbour_ids(planted_result):
    store, result = planted_result
    colours = store.columns["attr_color"].to_numpy()
    shapes = store.columns["attr_shape"].to_numpy()
    q_rows = result.queries.rows
    j = 0  # red
    for a in range(len(result.alphas)):
        rows = result.edited[j][a].rows
        has = np.mean([[colours[r] == "red" for r in row] for row in rows])
        keep = np.mean([[shapes[r] == shapes[q] for r in row] for row, q in zip(rows, q_rows)])
        assert result.curves["red"]["concept_frac"][a] == pytest.approx(has)
        assert result.curves["red"]["keep"]["shape"][a] == pytest.approx(keep)


def test_query_is_never_its_own_neighbour(planted_result):
    _, result = planted_result
    for nb in [result.original] + [n for row in result.edited for n in row]:
        assert not (nb.rows == result.queries.rows[:, None]).any()


def test_summary_is_flat_numbers(planted_result):
    _, result = planted_result
    summary = sim.summary(result)
    assert all(isinstance(v, float) for v in summary.values())
    assert summary["monotone_share"] == 1.0
    assert summary["red_concept_frac_top"] >= 0.8
    assert summary["concept_frac_top_mean"] == pytest.approx(
        np.mean([summary[f"{c}_concept_frac_top"] for c in ("red", "green", "yellow")])
    )


def test_strength_grid_is_relative_to_the_concept_activation(planted_result):
    store, result = planted_result
    from msae.probes.intervention import dense_columns

    red = dense_columns(planted_sae(), store.embeddings, [0])[:, 0]
    p99 = np.quantile(red[red > 0], 0.99)
    np.testing.assert_allclose(result.raw_alphas[0], p99 * np.array([0, 0.5, 1, 2, 4]), rtol=1e-5)


def test_queries_lacking_ground_truth_are_not_scored():
    store = grid_store(per_cell=3)
    red_ids = [i for i, c in zip(store.ids, store.columns["attr_color"]) if c == "red"][:2]
    concepts = resolve_concepts(["red", "8"], latents_table(), N_LATENTS)
    result = sim.search(planted_sae(), store, sim.Queries.from_store(store, red_ids), concepts, top=3, alpha_unit="raw")
    assert result.curves == {}  # queries already red; latent 8 has no attribute
    assert sim.summary(result)["n_ground_truth_concepts"] == 0.0


def test_unknown_query_id_is_an_error():
    with pytest.raises(MsaeError, match="not in the embedding store: nope"):
        sim.Queries.from_store(grid_store(per_cell=1), ["item-0000", "nope"])


@pytest.mark.parametrize("text", ["1,x", "2,1", "", "1,nan"])
def test_bad_alpha_grids(text):
    with pytest.raises(MsaeError, match="--alphas"):
        sim.parse_alphas(text)


def test_never_active_concept_needs_raw_units():
    store = grid_store(per_cell=1)
    concepts = resolve_concepts(["9"], latents_table(), N_LATENTS)  # a spare latent, never active
    queries = sim.Queries.from_store(store, store.ids[:1])
    with pytest.raises(MsaeError, match="never active"):
        sim.search(planted_sae(), store, queries, concepts)
    result = sim.search(planted_sae(), store, queries, concepts, alphas=[0, 1], alpha_unit="raw")
    np.testing.assert_array_equal(result.raw_alphas, [[0, 1]])


def test_add_and_scale_modes_run_and_scale_zero_removes(planted_result):
    store, _ = planted_result
    queries = _blue_queries(store)
    concepts = resolve_concepts(["blue"], latents_table(), N_LATENTS)
    removed = sim.search(planted_sae(), store, queries, concepts, alphas=[0.0], mode="scale", top=8)
    set_zero = sim.search(planted_sae(), store, queries, concepts, alphas=[0.0], mode="set", top=8)
    np.testing.assert_array_equal(removed.edited[0][0].rows, set_zero.edited[0][0].rows)
    added = sim.search(planted_sae(), store, queries, concepts, alphas=[1.0], mode="add", top=8)
    assert added.curves == {}  # queries are blue already: nothing to gain
    assert COLOURS.index("blue") == concepts[0].latent
