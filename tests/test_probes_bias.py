"""Counterfactual bias analysis on planted data where the classifier's cue is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from probes_planted import COLOURS, N_LATENTS, SHAPES, biased_store, colour_latent, latents_table, planted_sae

from msae.errors import MsaeError
from msae.probes import bias as B
from msae.probes.concepts import resolve_concepts
from msae.probes.intervention import dense_columns, raw_atoms
from msae.store import EmbeddingSet

ALL_CONCEPTS = [*COLOURS, *SHAPES]


def test_fit_probe_matches_sklearn_on_standardised_inputs():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6)) * rng.uniform(0.1, 5, size=6) + rng.normal(size=6)
    y = (x @ rng.normal(size=6) + rng.normal(size=300) > 0).astype(int)
    reference = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=2000)).fit(x, y)
    probe = B.fit_probe(x, y, c=0.5)
    np.testing.assert_allclose(probe.proba(x), reference.predict_proba(x)[:, 1], atol=1e-6)


def test_sigmoid_is_stable():
    t = np.array([-800.0, -1.0, 0.0, 1.0, 800.0])
    np.testing.assert_allclose(B.sigmoid(t), [0.0, 1 / (1 + np.e), 0.5, 1 / (1 + np.exp(-1)), 1.0])


def _explicit_effects(sae, probe, x, latents, mode, strengths, mask):
    """Independent path: edit dense latents, decode with the full SAE in float64, score with the probe."""
    model = type(sae)(sae.config)
    model.load_state_dict(sae.state_dict())
    model = model.double().eval()
    xt = torch.as_tensor(x, dtype=torch.float64)
    with torch.no_grad():
        z = model.encode_dense(xt)
        p = probe.proba(x)
        rows = []
        for latent, s in zip(latents, strengths):
            z_new = z.clone()
            old = z_new[:, latent]
            z_new[:, latent] = {"set": torch.full_like(old, s), "add": old + s, "scale": old * s}[mode].clamp_min(0)
            x_new = (xt + model.decode(z_new) - model.decode(z)).numpy()
            p_new = probe.proba(x_new)
            rows.append(
                ((p_new - p)[mask].mean(), np.abs(p_new - p)[mask].mean(), ((p_new >= 0.5) != (p >= 0.5))[mask].mean())
            )
    return np.asarray(rows)


@pytest.mark.parametrize("mode, strength", [("set", 0.0), ("set", 3.0), ("add", 1.5), ("scale", 0.3)])
def test_effects_match_decoding_every_edit(mode, strength):
    sae = planted_sae()
    store = biased_store(200, 0.9, seed=3, split="test")
    rng = np.random.default_rng(1)
    probe = B.LinearProbe(weight=rng.normal(size=24), bias=0.2)
    latents = list(range(8))
    z = dense_columns(sae, store.embeddings, latents)
    strengths = np.full(len(latents), strength)
    mask = rng.random(len(store)) < 0.6
    got = B.intervention_effects(
        probe,
        store.embeddings,
        z,
        raw_atoms(sae, latents),
        mode,
        strengths,
        {"all": np.ones(len(store), bool), "some": mask},
        chunk=3,
    )
    for group, m in (("all", np.ones(len(store), bool)), ("some", mask)):
        expected = _explicit_effects(sae, probe, store.embeddings, latents, mode, strengths, m)
        np.testing.assert_allclose(got[group]["dp"], expected[:, 0], atol=1e-6)  # z is float32
        np.testing.assert_allclose(got[group]["abs_dp"], expected[:, 1], atol=1e-6)
        np.testing.assert_allclose(got[group]["flip_rate"], expected[:, 2], atol=1e-12)


def _labels(store: EmbeddingSet) -> np.ndarray:
    return B.binary_target(store, "attr_shape", "star", "store")


def test_a_classifier_reading_one_planted_direction_ranks_its_latent_first():
    sae = planted_sae()
    test = biased_store(400, None, seed=5, split="test")
    concepts = resolve_concepts(ALL_CONCEPTS, latents_table(), N_LATENTS)
    z = dense_columns(sae, test.embeddings, [c.latent for c in concepts])
    for name in ("green", "circle"):
        direction = raw_atoms(sae, [resolve_concepts([name], latents_table(), N_LATENTS)[0].latent])[0]
        probe = B.LinearProbe(weight=8 * direction / np.linalg.norm(direction) ** 2, bias=-4.0)
        effects = B.intervention_effects(
            probe,
            test.embeddings,
            z,
            raw_atoms(sae, [c.latent for c in concepts]),
            "set",
            np.zeros(len(concepts)),
            {"all": np.ones(len(test), bool)},
        )
        order = np.argsort(-effects["all"]["abs_dp"])
        assert concepts[order[0]].name == name
        assert effects["all"]["abs_dp"][order[1]] < 1e-6  # orthogonal atoms: no other latent moves it


@pytest.fixture(scope="module")
def bias_runs():
    sae = planted_sae()
    test = biased_store(1000, None, seed=2, split="test")
    runs = {}
    for name, rate in (("bias_train", 0.9), ("bias_control", None)):
        train = biased_store(2000, rate, seed=1, split=name)
        y_train, y_test = _labels(train), _labels(test)
        spurious = B.spurious_from(train, y_train, "attr_color", "red", inferred=False)
        candidates = resolve_concepts(ALL_CONCEPTS, latents_table(), N_LATENTS)
        result = B.analyse(sae, train, test, y_train, y_test, candidates, spurious=spurious, seed=0)
        runs[name] = (result, B.summary(result, len(train), len(test), "abs_dp"))
    return runs


def test_planted_spurious_colour_is_found_first(bias_runs):
    result, summary = bias_runs["bias_train"]
    assert result.concepts[0].name == "red"
    assert summary["spurious_rank_in_attribute"] == 1.0
    assert summary["spurious_flip_rate_anti"] > 0.2  # removing red un-does the red-non-star mistakes
    assert summary["spurious_flip_rate_correlated"] > 0.0
    assert summary["spurious_dp"] < 0  # removing red lowers p(star)
    assert summary["test_acc_anti"] < summary["test_acc_correlated"]  # the classifier is biased


def test_control_split_shows_no_colour_bias(bias_runs):
    result, summary = bias_runs["bias_control"]
    biased = bias_runs["bias_train"][1]
    assert result.concepts[0].name == "star"  # without the correlation the target's own latent leads
    assert summary["spurious_effect_vs_top"] < 0.2 < biased["spurious_effect_vs_top"]
    assert summary["spurious_flip_rate_anti"] < 0.05 < biased["spurious_flip_rate_anti"]


def test_groups_follow_the_training_association(bias_runs):
    result, _ = bias_runs["bias_train"]
    test = biased_store(1000, None, seed=2, split="test")
    star = test.columns["attr_shape"].to_numpy() == "star"
    red = test.columns["attr_color"].to_numpy() == "red"
    np.testing.assert_array_equal(result.groups["correlated"], star == red)
    np.testing.assert_array_equal(result.groups["anti"], star != red)


def test_infer_spurious_finds_the_planted_value():
    train = biased_store(2000, 0.9, seed=1, split="bias_train")
    found = B.infer_spurious(train, _labels(train), "attr_shape")
    assert (found.column, found.value, found.inferred) == ("attr_color", "red", True)
    assert found.rate_positive > 0.85 and found.rate_negative < 0.1
    train.columns["label"] = train.columns["attr_shape"]  # the target given as `label`
    y = B.binary_target(train, "label", "star", "train")
    assert B.infer_spurious(train, y, "label").value == "red"  # attr_shape=star is the target itself


def test_rank_by_flip_rate_orders_by_flips(bias_runs):
    sae = planted_sae()
    train = biased_store(600, 0.9, seed=1, split="bias_train")
    test = biased_store(300, None, seed=2, split="test")
    result = B.analyse(
        sae,
        train,
        test,
        _labels(train),
        _labels(test),
        resolve_concepts(ALL_CONCEPTS, latents_table(), N_LATENTS),
        rank_by="flip_rate",
    )
    flips = result.effects["all"]["flip_rate"]
    assert (np.diff(flips) <= 0).all()


def _frame_store(values) -> EmbeddingSet:
    return EmbeddingSet(
        np.arange(len(values)).astype(str).astype(object),
        np.zeros((len(values), 2), np.float32),
        {},
        pd.DataFrame({"y": values}),
    )


def test_binary_target_variants_and_errors():
    np.testing.assert_array_equal(B.binary_target(_frame_store(["-1", "1", "1"]), "y", None, "s"), [0, 1, 1])
    np.testing.assert_array_equal(B.binary_target(_frame_store([True, False]), "y", None, "s"), [1, 0])
    np.testing.assert_array_equal(B.binary_target(_frame_store(["no", "yes"]), "y", None, "s"), [0, 1])  # CelebA
    np.testing.assert_array_equal(B.binary_target(_frame_store(["Star", "circle"]), "y", "star", "s"), [1, 0])
    with pytest.raises(MsaeError, match="not binary.*--positive"):
        B.binary_target(_frame_store(["star", "circle"]), "y", None, "s")
    with pytest.raises(MsaeError, match="no column 'label'"):
        B.binary_target(_frame_store(["1"]), "label", None, "s")
    with pytest.raises(MsaeError, match="one class only"):
        B.require_two_classes(np.array([1, 1, 1]), "y", None, "s")


def test_spurious_argument_errors():
    assert B.spurious_arg("attr_color=red") == ("attr_color", "red")
    with pytest.raises(MsaeError, match="COLUMN=VALUE"):
        B.spurious_arg("attr_color")
    train = biased_store(100, 0.9, seed=1, split="bias_train")
    with pytest.raises(MsaeError, match="never occurs"):
        B.spurious_from(train, _labels(train), "attr_color", "magenta", inferred=False)


def test_spurious_value_maps_to_its_colour_latent(bias_runs):
    result, _ = bias_runs["bias_train"]
    assert result.concepts[B.spurious_index(result)].latent == colour_latent("red")


def _celeba_style(store: EmbeddingSet) -> EmbeddingSet:
    """The planted store as CelebA lays it out: attributes are yes/no columns named after the
    attribute (attr_Star = the target, attr_Red_Color the spurious one, attr_Blue_Color another)
    and the concepts' names are no attribute value (their attribute is "")."""
    colour, shape = store.columns["attr_color"].to_numpy(), store.columns["attr_shape"].to_numpy()
    yes_no = {
        "attr_Star": shape == "star",
        "attr_Red_Color": colour == "red",
        "attr_Blue_Color": colour == "blue",
    }
    columns = pd.DataFrame({k: np.where(v, "yes", "no") for k, v in yes_no.items()})
    return EmbeddingSet(store.ids, store.embeddings, store.meta, columns)


def test_yes_no_columns_infer_the_present_value_and_match_its_concept():
    """Issue 13 item 3: on yes/no columns the "no" of the spurious column ties with its "yes" and,
    first in sorted order, won: no concept is named "no", so the spurious concept was never found
    (old code: value "no", spurious_index None, no spurious_rank in the summary)."""
    train = _celeba_style(biased_store(2000, 0.9, seed=1, split="bias_train"))
    test = _celeba_style(biased_store(1000, None, seed=2, split="test"))
    y_train = B.binary_target(train, "attr_Star", None, "train")
    y_test = B.binary_target(test, "attr_Star", None, "test")
    found = B.infer_spurious(train, y_train, "attr_Star")
    assert (found.column, found.value) == ("attr_Red_Color", "yes")
    assert found.rate_positive > 0.85 and found.rate_negative < 0.1
    assert found.names == ("red color", "red") and found.attribute == ""  # "color" is in another column
    table = latents_table().assign(attribute="")  # CelebA names belong to no attr_* value
    candidates = resolve_concepts(ALL_CONCEPTS, table, N_LATENTS)
    result = B.analyse(planted_sae(), train, test, y_train, y_test, candidates, spurious=found, seed=0)
    summary = B.summary(result, len(train), len(test), "abs_dp")
    assert result.concepts[B.spurious_index(result)].latent == colour_latent("red")
    assert summary["spurious_rank"] == 1.0 and summary["spurious_flip_rate_anti"] > 0.2
    # the groups follow the association of the present value: a star without red is anti-correlated
    star, red = y_test == 1, test.columns["attr_Red_Color"].to_numpy() == "yes"
    np.testing.assert_array_equal(result.groups["anti"], star != red)


def test_rank_by_flip_rate_ranks_each_concepts_own_effects():
    """Beyond sortedness: each ranked concept carries its own effects (an independent float64
    decode-and-score), ties go to the lower latent, and the flip rates differ."""
    sae = planted_sae()
    train = biased_store(600, 0.9, seed=1, split="bias_train")
    test = biased_store(300, None, seed=2, split="test")
    candidates = resolve_concepts(ALL_CONCEPTS, latents_table(), N_LATENTS)
    result = B.analyse(sae, train, test, _labels(train), _labels(test), candidates, rank_by="flip_rate")
    assert sorted(k.latent for k in result.concepts) == sorted(k.latent for k in candidates)
    latents = [k.latent for k in result.concepts]
    everyone = np.ones(len(test), bool)
    want = _explicit_effects(sae, result.probe, test.embeddings, latents, "set", np.zeros(len(latents)), everyone)
    got = result.effects["all"]
    np.testing.assert_allclose(got["dp"], want[:, 0], atol=1e-6)
    np.testing.assert_allclose(got["abs_dp"], want[:, 1], atol=1e-6)
    np.testing.assert_allclose(got["flip_rate"], want[:, 2], atol=1e-12)
    # the order: flip rate descending, then latent ascending, from the independent values
    expected = sorted(range(len(latents)), key=lambda i: (-want[i, 2], latents[i]))
    assert expected == list(range(len(latents)))
    assert len(set(np.round(want[:, 2], 12))) >= 3  # several distinct flip rates: the order means something
    assert got["flip_rate"][0] > 0
