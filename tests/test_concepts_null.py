"""Rule 2's data null and the measured false-positive rate, on anisotropic (CLIP-like) data.

Negative controls: random latents drawn inside the data's span must be judged valid at most 2% of
the time, with and without captions, on the world CLIP and on a synthetic power-law spectrum.
Positive controls: planted concept directions are named right and pass. The isotropic null the
rule used before passes nearly every in-span direction on the same data (shown by swapping it in).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import msae.concepts.null as null_module
from msae.concepts.null import (
    FAMILIES,
    DirectionLatents,
    Evidence,
    assess,
    false_positive_rate,
    fit_null,
    in_span_directions,
    match_directions,
    match_z,
)
from msae.concepts.validity import ValidityRule
from msae.errors import MsaeError
from msae.synthetic import clip_like, participation_ratio, power_law_spectrum

TARGET = 0.02  # issue 13: at most 2% of random in-span latents may be judged valid


def _frame(images: np.ndarray, atoms: np.ndarray) -> DirectionLatents:
    return DirectionLatents(torch.tensor(atoms, dtype=torch.float32), torch.tensor(images.mean(0)), 1.0)


def _isotropic(rows: np.ndarray, samples: int, rng: np.random.Generator) -> np.ndarray:
    """The null the rule used before: Gaussian directions that ignore the data's covariance."""
    return rng.normal(size=(samples, np.asarray(rows).shape[1]))


def _random_in_span_atoms(images: np.ndarray, terms: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Chance atoms built here, independently of the code under test: n directions drawn with the
    image covariance (through its eigendecomposition) and n random Gaussian mixtures of the
    centred vocabulary embeddings."""
    rng = np.random.default_rng(seed)
    lam, vec = np.linalg.eigh(np.cov(np.asarray(images, dtype=np.float64), rowvar=False))
    shaped = rng.normal(size=(n, len(lam))) * np.sqrt(lam.clip(0)) @ vec.T
    t = np.asarray(terms, dtype=np.float64)
    mixed = rng.normal(size=(n, len(t))) @ (t - t.mean(0))
    return np.vstack([shaped, mixed])


def _share_valid(frame, atoms, terms, ids, images, captions, null) -> tuple[float, float]:
    """The share of `atoms` the whole rule judges valid: (with captions, without captions)."""
    chance = DirectionLatents(torch.tensor(atoms, dtype=torch.float32), frame.mean, float(frame.scale))
    result = assess(chance, Evidence(terms, ids, images, captions), null, ValidityRule(), top_terms=1)
    return float(result.valid.mean()), float(result.valid_without_captions.mean())


# ----------------------------------------------------------------------------- building blocks
def test_in_span_directions_follow_the_rows_covariance(monkeypatch):
    rng = np.random.default_rng(0)
    rows = (
        rng.normal(size=(300, 5)) @ np.diag([3.0, 1.0, 0.5, 0.1, 0.01]) @ np.linalg.qr(rng.normal(size=(5, 5)))[0] + 7
    )
    draws = in_span_directions(rows, 40000, np.random.default_rng(1))
    expected = np.cov(rows, rowvar=False)
    np.testing.assert_allclose(np.cov(draws, rowvar=False), expected, atol=0.03 * np.abs(expected).max())
    np.testing.assert_allclose(draws.mean(0), 0, atol=0.05)
    monkeypatch.setattr(null_module, "MAX_MIXTURE_ROWS", 3)  # large stores: mix a random subset of rows
    sub = in_span_directions(rows, 100, np.random.default_rng(2))
    assert np.linalg.matrix_rank(sub, tol=1e-8) == 2  # 3 centred rows span a plane
    with pytest.raises(MsaeError, match="at least 2 embeddings"):
        in_span_directions(rows[:1], 3, rng)


class AffineLatents(torch.nn.Module):
    """An SAE-like module whose pre-activation is an arbitrary affine map of the raw input."""

    def __init__(self, d: int, n: int, seed: int) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.w = torch.nn.Parameter(torch.randn(d, n, generator=gen), requires_grad=False)
        self.b = torch.nn.Parameter(torch.randn(n, generator=gen), requires_grad=False)
        self.register_buffer("mean", torch.randn(d, generator=gen) * 3)
        self.register_buffer("scale", torch.tensor(0.7))
        self.config = type("C", (), {"d": d, "n_latents": n})()

    def atoms_raw_direction(self) -> torch.Tensor:
        return self.w.T.flip(0)  # any decoder, unrelated to the encoder

    def pre_activation(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean) * self.scale) @ self.w + self.b

    def encode_dense(self, x: torch.Tensor) -> torch.Tensor:
        return self.pre_activation(x).clamp_min(0)


def test_match_directions_are_the_atoms_or_the_encoder_direction():
    latents = AffineLatents(6, 9, seed=0)
    w = latents.w.double().numpy()
    got = match_directions(latents, "activation", "center").double().numpy()
    np.testing.assert_allclose(got, (w / np.linalg.norm(w, axis=0)).T, atol=1e-5)
    atoms = latents.atoms_raw_direction().double().numpy()
    np.testing.assert_allclose(
        match_directions(latents, "decoder", "center").numpy(),
        atoms / np.linalg.norm(atoms, axis=1, keepdims=True),
        atol=1e-6,
    )
    shifted = atoms + latents.mean.double().numpy()
    np.testing.assert_allclose(
        match_directions(latents, "decoder", "none").numpy(),
        shifted / np.linalg.norm(shifted, axis=1, keepdims=True),
        atol=1e-6,
    )


@pytest.mark.parametrize("method", ["decoder", "decoder-projection", "activation"])
def test_fit_null_and_match_z_against_float64_brute_force(method):
    rng = np.random.default_rng(0)
    d, v = 8, 60
    images = rng.normal(size=(200, d)) * np.linspace(3, 0.1, d) + 2
    terms = rng.normal(size=(v, d)) * np.linspace(0.2, 2, d) - 1
    latents = AffineLatents(d, 5, seed=1)
    null = fit_null(latents, terms, images, method, "center", quantile=0.9, samples=40, seed=3, budget=7 * 80)

    # the same draws, re-scored with numpy in float64
    moments_seed, threshold_seed = np.random.SeedSequence([3, 0]).spawn(2)
    centred = terms - terms.mean(0)
    unit_terms = centred / np.linalg.norm(centred, axis=1, keepdims=True)
    ranked_by = unit_terms if method == "decoder" else centred  # what naming ranks terms by

    def draws(seed):
        rngs = [np.random.default_rng(s) for s in seed.spawn(2)]
        dirs = np.vstack([in_span_directions(images, 40, rngs[0]), in_span_directions(terms, 40, rngs[1])])
        return dirs / np.linalg.norm(dirs, axis=1, keepdims=True)

    def fisher(cos):
        return np.arctanh(np.clip(cos, -1 + 1e-6, 1 - 1e-6))

    fitted = fisher(unit_terms @ draws(moments_seed).T)  # [v, 80]
    mu, sd = fitted.mean(1), fitted.std(1)
    np.testing.assert_allclose(null.term_mean, mu, atol=1e-5)
    np.testing.assert_allclose(null.term_std, sd, rtol=1e-4)
    judged = draws(threshold_seed)
    best = (ranked_by @ judged.T).argmax(0)
    z = (fisher(np.einsum("nd,nd->n", unit_terms[best], judged)) - mu[best]) / sd[best]
    expected = {f: np.quantile(z[i * 40 : (i + 1) * 40], 0.9) for i, f in enumerate(FAMILIES)}
    assert null.family_thresholds == pytest.approx(expected, rel=1e-4)
    assert null.threshold == pytest.approx(max(expected.values()), rel=1e-4)

    # a latent's statistic: its name's cosine with its match direction, transformed and standardised
    names = rng.integers(0, v, size=5)
    if method == "activation":
        w = latents.w.double().numpy().T  # the encoder's raw-space directions
    else:
        w = latents.atoms_raw_direction().double().numpy()
    cos = np.einsum("nd,nd->n", unit_terms[names], w / np.linalg.norm(w, axis=1, keepdims=True))
    np.testing.assert_allclose(
        match_z(latents, terms, names, null), (fisher(cos) - mu[names]) / sd[names], rtol=1e-4, atol=1e-4
    )


def test_terms_at_the_vocabulary_mean_give_zero_not_nan():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(50, 4))
    spread = rng.integers(-5, 6, size=(5, 4)).astype(np.float64)
    terms = np.vstack([np.full((3, 4), 2.0), 2.0 + spread, 2.0 - spread])  # the first three are the mean, exactly
    latents = _frame(images, rng.normal(size=(2, 4)))
    null = fit_null(latents, terms, images, "decoder-projection", samples=20)
    assert np.all(null.term_std[:3] == 0) and np.all(null.term_std[3:] > 0)
    assert match_z(latents, terms, np.array([0, 1]), null).tolist() == [0.0, 0.0]
    assert np.all(match_z(latents, terms, np.array([3, 4]), null) != 0)


def test_bad_null_arguments_are_named():
    images = np.random.default_rng(0).normal(size=(20, 4))
    latents = _frame(images, images[:2])
    with pytest.raises(MsaeError, match="--null-samples"):
        fit_null(latents, images, images, samples=5)
    with pytest.raises(MsaeError, match="--null-quantile"):
        fit_null(latents, images, images, quantile=1.0)
    with pytest.raises(MsaeError, match="--method"):
        fit_null(latents, images, images, method="nearest")
    with pytest.raises(MsaeError, match="vocabulary embeddings .* dim 4"):
        fit_null(latents, images[:, :3], images)
    with pytest.raises(MsaeError, match="image embeddings .* dim 4"):
        fit_null(latents, images, images[:, :3])


# ----------------------------------------------------------------------------- synthetic CLIP-like data
def test_synthetic_spectrum_is_clip_like():
    lam = power_law_spectrum(128, 12.0)
    assert lam.sum() ** 2 / (lam**2).sum() == pytest.approx(12.0, rel=1e-6)
    assert np.all(np.diff(lam) < 0)
    data = clip_like(d=128, n_images=2000, seed=1)
    x = data.images.astype(np.float64)
    eig = np.linalg.eigvalsh(np.cov(x, rowvar=False))
    assert participation_ratio(x) == pytest.approx(eig.sum() ** 2 / (eig**2).sum(), rel=1e-6)
    assert 8 < participation_ratio(x) < 25 and 8 < participation_ratio(data.terms) < 25
    assert np.linalg.norm(x.mean(0)) > np.sqrt(eig.sum())  # far from the origin: mean cosine of two images ~0.6
    gap = (
        data.images.mean(0)
        @ data.terms.mean(0)
        / np.linalg.norm(data.images.mean(0))
        / np.linalg.norm(data.terms.mean(0))
    )
    assert 0.1 < gap < 0.5  # the modality gap
    word = data.terms[:64] - data.terms.mean(0)
    cos = np.einsum("kd,kd->k", word / np.linalg.norm(word, axis=1, keepdims=True), data.concepts)
    assert 0.7 < np.median(cos) < 0.9
    k = 5
    assert all((f"concept{k:03d}" in c) == bool(a) for c, a in zip(data.captions, data.active[:, k]))


@pytest.fixture(scope="module")
def synthetic():
    torch.set_num_threads(1)
    return clip_like(d=128, n_images=4000, seed=0)


@pytest.fixture(scope="module")
def synthetic_null(synthetic):
    """The planted concepts as latents, the null fitted on the data and the measured rate."""
    ids = np.array(synthetic.term_names, dtype=object)
    frame = _frame(synthetic.images, synthetic.concepts)
    null = fit_null(frame, synthetic.terms, synthetic.images, "decoder", samples=1000, seed=0)
    fp = false_positive_rate(
        frame, Evidence(synthetic.terms, ids, synthetic.images, synthetic.captions), null, ValidityRule(), samples=500
    )
    return frame, null, fp, ids


@pytest.mark.parametrize("method", ["decoder", "decoder-projection", "activation"])
def test_synthetic_random_in_span_latents_rarely_pass(synthetic, synthetic_null, method):
    frame, null, fp, ids = synthetic_null
    if method != null.method:
        null = fit_null(frame, synthetic.terms, synthetic.images, method, samples=1000, seed=0)
        fp = false_positive_rate(
            frame,
            Evidence(synthetic.terms, ids, synthetic.images, synthetic.captions),
            null,
            ValidityRule(),
            samples=500,
        )
    atoms = _random_in_span_atoms(synthetic.images, synthetic.terms, 500, seed=7)
    with_captions, without = _share_valid(
        frame, atoms, synthetic.terms, ids, synthetic.images, synthetic.captions, null
    )
    assert with_captions <= TARGET and without <= TARGET
    # the run's own measurement (its own draws) says the same
    assert fp.rate_with_captions <= TARGET and fp.rate_without_captions <= TARGET, fp
    assert set(fp.by_family) == set(FAMILIES) and fp.samples == 500


def test_synthetic_planted_concepts_pass(synthetic, synthetic_null):
    frame, null, _, ids = synthetic_null
    for captions in (synthetic.captions, None):
        result = assess(frame, Evidence(synthetic.terms, ids, synthetic.images, captions), null, ValidityRule())
        named = np.array(result.names) == ids[: len(result.names)]
        assert named.all()
        # concepts along the dominant directions are hit by chance too; most are not (measured:
        # 78% with captions, 80% without; 61-67% with a plain, untransformed cosine)
        assert (result.valid & named).mean() >= 0.7


def test_isotropic_null_accepts_chance_on_the_synthetic_spectrum(synthetic, synthetic_null, monkeypatch):
    """Negative control of the test itself: with the old isotropic null the same check fails."""
    frame, _, _, ids = synthetic_null
    monkeypatch.setattr(null_module, "in_span_directions", _isotropic)
    null = fit_null(frame, synthetic.terms, synthetic.images, samples=500)
    atoms = _random_in_span_atoms(synthetic.images, synthetic.terms, 300, seed=7)
    assert _share_valid(frame, atoms, synthetic.terms, ids, synthetic.images, None, null)[1] > 0.5


def test_false_positive_summary_keys(synthetic_null):
    fp = synthetic_null[2]
    s = fp.summary()
    assert s["null_false_positive_rate"] == fp.rate_with_captions
    assert s["null_false_positive_rate_no_captions"] == fp.rate_without_captions
    assert s["null_atoms"] == 1000 and isinstance(s["null_method"], str)
    assert {f"null_false_positive_rate_{f}" for f in FAMILIES} <= set(s)


# ----------------------------------------------------------------------------- the world CLIP
@pytest.fixture(scope="module")
def world():
    """World CLIP embeddings made the way `msae embed` makes them: 900 rendered test images with
    captions and attributes, and a vocabulary of the attribute words plus 600 frequent words."""
    from msae.world.clip import builtin_weights_path

    if not builtin_weights_path().is_file():
        pytest.skip("world CLIP weights not trained yet")
    wordfreq = pytest.importorskip("wordfreq")
    from PIL import Image

    from msae.world.attributes import ATTRIBUTES
    from msae.world.quality import load_world_clip
    from msae.world.render import render_arrays, scene_at
    from msae.world.scene import WorldParams, describe

    torch.set_num_threads(1)
    model, preprocess, tokenizer, _ = load_world_clip("builtin", device="cpu")
    n, params = 900, WorldParams()
    pixels = render_arrays(11, "test", n, params, workers=1, progress=False)
    scenes = [scene_at(11, "test", i, params) for i in range(n)]
    words = [w for values in ATTRIBUTES.values() for w in values]
    common = [w for w in wordfreq.top_n_list("en", 900) if len(w) >= 3 and w not in words][:600]
    with torch.no_grad():
        batch = torch.stack([preprocess(Image.fromarray(a)) for a in pixels])
        images = torch.cat([model.encode_image(batch[i : i + 300]) for i in range(0, n, 300)]).float().numpy()
        terms = model.encode_text(tokenizer(words + common)).float().numpy()
    colours = np.array([s.objects[0].color for s in scenes])
    return {
        "images": images,
        "terms": terms,
        "ids": np.array(words + common, dtype=object),
        "captions": [describe(s) for s in scenes],
        "colours": colours,
    }


def _colour_atoms(world) -> tuple[list[str], np.ndarray]:
    values = sorted(set(world["colours"]))
    x = world["images"]
    return values, np.array([x[world["colours"] == c].mean(0) - x.mean(0) for c in values])


@pytest.mark.parametrize("method", ["decoder", "decoder-projection"])
def test_world_clip_random_in_span_latents_rarely_pass(world, method):
    _, atoms = _colour_atoms(world)
    frame = _frame(world["images"], atoms)
    null = fit_null(frame, world["terms"], world["images"], method, samples=1000)
    chance = _random_in_span_atoms(world["images"], world["terms"], 500, seed=7)
    with_captions, without = _share_valid(
        frame, chance, world["terms"], world["ids"], world["images"], world["captions"], null
    )
    assert with_captions <= TARGET and without <= TARGET
    fp = false_positive_rate(
        frame,
        Evidence(world["terms"], world["ids"], world["images"], world["captions"]),
        null,
        ValidityRule(),
        samples=500,
    )
    assert fp.rate_with_captions <= TARGET and fp.rate_without_captions <= TARGET, fp


@pytest.mark.parametrize(("method", "passing"), [("decoder-projection", 8), ("decoder", 7)])
def test_world_clip_colour_concepts_pass(world, method, passing):
    """The eight colour directions (class means of the images) are named right and pass. Their
    match_z is the same under both methods (the term's length cancels); with the cosine, random
    vocabulary mixtures set a higher bar (about 3.5 vs 3.0) and purple (3.4) falls just short."""
    values, atoms = _colour_atoms(world)
    frame = _frame(world["images"], atoms)
    null = fit_null(frame, world["terms"], world["images"], method, samples=1000)
    for captions in (world["captions"], None):
        result = assess(frame, Evidence(world["terms"], world["ids"], world["images"], captions), null, ValidityRule())
        assert result.names == values
        assert result.valid.sum() >= passing, dict(zip(values, np.round(result.match_z, 2)))


def test_isotropic_null_accepts_chance_on_the_world_clip(world, monkeypatch):
    _, atoms = _colour_atoms(world)
    frame = _frame(world["images"], atoms)
    monkeypatch.setattr(null_module, "in_span_directions", _isotropic)
    null = fit_null(frame, world["terms"], world["images"], "decoder", samples=500)
    chance = _random_in_span_atoms(world["images"], world["terms"], 300, seed=7)
    assert _share_valid(frame, chance, world["terms"], world["ids"], world["images"], None, null)[1] > 0.5


@pytest.mark.slow
def test_clip_sized_synthetic_rejects_chance_and_keeps_planted_concepts():
    """d = 768 (ViT-L-sized), 20000 images: the same targets as at d = 128."""
    data = clip_like(d=768, n_images=20000, n_concepts=128, n_distractors=5000, participation=15.0, seed=2)
    ids = np.array(data.term_names, dtype=object)
    frame = _frame(data.images, data.concepts)
    null = fit_null(frame, data.terms, data.images, "decoder", samples=1000, seed=0)
    chance = _random_in_span_atoms(data.images, data.terms, 500, seed=7)
    with_captions, without = _share_valid(frame, chance, data.terms, ids, data.images, data.captions, null)
    assert with_captions <= TARGET and without <= TARGET
    result = assess(frame, Evidence(data.terms, ids, data.images, None), null, ValidityRule())
    named = np.array(result.names) == ids[: len(result.names)]
    assert named.mean() >= 0.95 and (result.valid & named).mean() >= 0.75
