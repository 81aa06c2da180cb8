"""SAE module invariants, checked against independent numpy float64 computations."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from msae.errors import MsaeError
from msae.sae import SAEConfig, SparseAutoencoder, load, make_config, save
from msae.sae import activations as act
from msae.sae.model import scale_factor
from msae.sae.variants.matryoshka import default_nesting, level_weights
from msae.train import training_step

FAST = settings(max_examples=40, deadline=None)
# Small float grid: hypothesis will produce ties and exact zeros, the hard cases for top-k.
values = st.sampled_from([-2.0, -1.0, -0.5, 0.0, 0.25, 0.5, 1.0, 1.5, 3.0])


def matrices(max_rows: int = 6, max_cols: int = 12):
    shape = st.tuples(st.integers(1, max_rows), st.integers(1, max_cols))
    return shape.flatmap(lambda s: hnp.arrays(np.float32, s, elements=values))


def _model(variant: str, d: int = 8, expansion: float = 4, seed: int = 0, **kw) -> SparseAutoencoder:
    torch.manual_seed(seed)
    model = SparseAutoencoder(make_config(variant, d, expansion, **kw))
    with torch.no_grad():  # move away from the symmetric init so every path is exercised
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
        if variant == "jumprelu":
            model.threshold.abs_()
        model.set_statistics(torch.randn(d), 1.7)
    return model


# ------------------------------------------------------------------ activations
@FAST
@given(matrices(), st.integers(1, 14))
def test_topk_keeps_exactly_min_k_positive_and_the_largest_values(a, k):
    z = act.nested_topk(torch.from_numpy(a), [k], over_batch=False)[0].numpy()
    for row_a, row_z in zip(a, z):
        active = row_z != 0
        kk = min(k, len(row_a))
        assert active.sum() == min(kk, int((row_a > 0).sum()))
        np.testing.assert_array_equal(row_z[active], row_a[active])  # values kept unchanged
        if active.any() and (~active).any():  # nothing dropped is larger than what was kept
            assert row_a[~active].max() <= row_a[active].min()


@FAST
@given(matrices(), st.integers(1, 14))
def test_batchtopk_keeps_at_most_k_per_sample_on_average_and_the_largest(a, k):
    z = act.nested_topk(torch.from_numpy(a), [k], over_batch=True)[0].numpy()
    active = z != 0
    assert active.sum(axis=1).mean() <= k
    assert active.sum() == min(min(k * a.shape[0], a.size), int((a > 0).sum()))
    if active.any() and (~active).any():
        assert a[~active].max() <= a[active].min()


@FAST
@given(matrices(), st.lists(st.integers(1, 14), min_size=1, max_size=4, unique=True), st.booleans())
def test_matryoshka_levels_are_nested_and_each_is_a_topk(a, ks, over_batch):
    ks = sorted(ks)
    levels = [z.numpy() for z in act.nested_topk(torch.from_numpy(a), ks, over_batch=over_batch)]
    for small, large in zip(levels, levels[1:]):
        assert np.all((small != 0) <= (large != 0)), "a level's active set must contain the previous one's"
    if not over_batch:
        for k, z in zip(ks, levels):
            expected = np.minimum(min(k, a.shape[1]), (a > 0).sum(axis=1))
            np.testing.assert_array_equal((z != 0).sum(axis=1), expected)


def test_jumprelu_straight_through_gradients_match_the_formula():
    torch.manual_seed(0)
    a = torch.randn(50, 6, dtype=torch.float64, requires_grad=True)
    theta = torch.rand(6, dtype=torch.float64).requires_grad_()
    eps = 0.3
    act.jumprelu(a, theta, eps).sum().backward()
    an, tn = a.detach().numpy(), theta.detach().numpy()
    inside = np.abs((an - tn) / eps) < 0.5
    np.testing.assert_allclose(theta.grad.numpy(), (-(tn / eps) * inside).sum(0))
    np.testing.assert_array_equal(a.grad.numpy(), (an > tn).astype(float))
    theta.grad = None
    a.grad = None
    act.step_count(a, theta, eps).sum().backward()
    np.testing.assert_allclose(theta.grad.numpy(), (-(1 / eps) * inside).sum(0))
    assert a.grad is None or not a.grad.any()


# ------------------------------------------------------------------ loss vs numpy float64
def _numpy_objective(model: SparseAutoencoder, x_tilde: np.ndarray) -> float:
    """The paper's loss, written independently in float64 numpy (docs/paper.md)."""
    cfg, arch = model.config, model.config.arch
    w_enc, b_enc = model.W_enc.detach().double().numpy(), model.b_enc.detach().double().numpy()
    w_dec, b_pre = model.W_dec.detach().double().numpy(), model.b_pre.detach().double().numpy()
    x = x_tilde.astype(np.float64)
    a = (x - b_pre) @ w_enc + b_enc
    x_sq = (x**2).sum(1)

    def nmse(xh):
        return np.mean(((xh - x) ** 2).sum(1) / x_sq) if cfg.loss == "nmse" else np.mean((xh - x) ** 2)

    def topk(k):
        z = np.zeros_like(a)
        order = np.argsort(-a, axis=1)[:, :k]
        rows = np.arange(len(a))[:, None]
        z[rows, order] = np.maximum(a[rows, order], 0)
        return z

    if cfg.variant == "matryoshka":
        h = len(arch.nesting)
        alpha = np.arange(h, 0, -1.0) if arch.weighting == "rw" else np.ones(h)
        losses = [nmse(topk(k) @ w_dec + b_pre) for k in arch.nesting]
        return float(np.dot(alpha, losses) / alpha.sum())
    if cfg.variant == "topk":
        return float(nmse(topk(arch.k) @ w_dec + b_pre))
    if cfg.variant == "relu":
        z = np.maximum(a, 0)
        return float(nmse(z @ w_dec + b_pre) + arch.l1 * np.mean(np.abs(z).sum(1) / np.sqrt(x_sq)))
    theta = model.threshold.detach().double().numpy()  # jumprelu
    z = a * (a > theta)
    return float(nmse(z @ w_dec + b_pre) + arch.l0_coef * np.mean((a > theta).sum(1)))


@pytest.mark.parametrize(
    "variant, kw",
    [
        ("matryoshka", {"nesting": [2, 5, 11, 32], "weighting": "rw"}),
        ("matryoshka", {"nesting": [2, 5, 11, 32], "weighting": "uw"}),
        ("matryoshka", {"nesting": [3, 9], "weighting": "rw", "loss": "mse"}),
        ("topk", {"k": 5}),
        ("relu", {"l1": 0.05}),
        ("jumprelu", {"l0_coef": 0.01}),
    ],
)
def test_loss_equals_independent_float64_computation(variant, kw):
    model = _model(variant, **kw)
    x = np.random.default_rng(1).standard_normal((33, 8)).astype(np.float32)
    got = model.objective(torch.from_numpy(x)).loss.item()
    assert got == pytest.approx(_numpy_objective(model, x), rel=2e-5)


def test_rw_weights_favour_the_smallest_k():
    assert level_weights(4, "rw") == [4.0, 3.0, 2.0, 1.0]
    assert level_weights(3, "uw") == [1.0, 1.0, 1.0]


# ------------------------------------------------------------------ init, normalisation, scaling
def test_init_matches_the_reference():
    model = SparseAutoencoder(make_config("topk", 16, 4, k=3))
    norms = model.W_dec.detach().norm(dim=1)
    torch.testing.assert_close(norms, torch.full_like(norms, 0.1))
    assert torch.equal(model.W_enc.detach(), model.W_dec.detach().T)
    assert model.W_enc.data_ptr() != model.W_dec.data_ptr()
    assert not model.b_enc.any() and not model.b_pre.any()


@pytest.mark.parametrize("variant", ["relu", "jumprelu"])
def test_renormalisation_keeps_outputs_and_units_the_rows(variant):
    model = _model(variant)
    x = torch.randn(20, 8)
    before = model.decode(model.encode(x))
    model.normalize_decoder_()
    torch.testing.assert_close(model.W_dec.norm(dim=1), torch.ones(model.config.n_latents))
    torch.testing.assert_close(model.decode(model.encode(x)), before, rtol=1e-5, atol=1e-5)


def test_projection_removes_the_radial_gradient():
    model = _model("topk", k=3)
    model.normalize_decoder_()
    model.objective(torch.randn(16, 8)).loss.backward()
    model.project_decoder_grad_()
    radial = (model.W_dec.grad * model.W_dec).sum(1)
    assert radial.abs().max() < 1e-6


@pytest.mark.parametrize(
    "variant, kw",
    [
        ("relu", {}),
        ("topk", {"k": 3}),
        ("batchtopk", {"k": 3}),
        ("matryoshka", {"nesting": [2, 8, 32]}),
        ("jumprelu", {}),
        ("topk", {"k": 3, "auxk_alpha": 0.1, "auxk_k": 4}),
    ],
)
def test_decoder_rows_have_unit_norm_after_every_step(variant, kw):
    model = _model(variant, **kw)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, eps=6.25e-10, weight_decay=0)
    dead = torch.zeros(model.config.n_latents, dtype=torch.bool)
    dead[::3] = True
    for _ in range(5):
        training_step(model, opt, torch.randn(32, 8) * 2, dead)
        torch.testing.assert_close(model.W_dec.detach().norm(dim=1), torch.ones(model.config.n_latents))


@pytest.mark.parametrize("mode", ["rms", "paper"])
def test_scale_factor_matches_numpy_and_rms_gives_norm_sqrt_d(mode):
    x = np.random.default_rng(3).standard_normal((500, 12)) * 4 + 1
    centred = x - x.mean(0)
    msq = (centred**2).sum(1).mean()
    s = scale_factor(msq, 12, mode)
    assert s == pytest.approx(np.sqrt(12) / (np.sqrt(msq) if mode == "rms" else msq))
    if mode == "rms":
        assert ((centred * s) ** 2).sum(1).mean() == pytest.approx(12)


# ------------------------------------------------------------------ config
def test_default_nesting_matches_the_reference_table():
    assert default_nesting(64, 6144) == [64, 128, 256, 512, 1024, 2048, 4096, 6144]
    assert default_nesting(64, 4096) == [64, 128, 256, 512, 1024, 2048, 4096]
    assert default_nesting(64, 24576)[-2:] == [16384, 24576] and len(default_nesting(64, 24576)) == 10
    assert list(make_config("matryoshka", 512, 16).arch.nesting) == default_nesting(64, 8192)
    assert make_config("topk", 512, 8).arch.k == 64 and make_config("batchtopk", 512, 8).arch.k == 32
    assert make_config("relu", 512, 8).arch.l1 == 0.003


@pytest.mark.parametrize(
    "variant, kw, needle",
    [
        ("topk", {"k": 65}, "--k: 65"),
        ("batchtopk", {"k": 0}, "--k: 0"),
        ("matryoshka", {"nesting": [4, 4, 8]}, "increase strictly"),
        ("matryoshka", {"nesting": [8, 4]}, "increase strictly"),
        ("matryoshka", {"nesting": [4, 65]}, "1..n = 64"),
        ("matryoshka", {"nesting_start": 100}, "--nesting-start: 100"),
        ("relu", {"l1": -1.0}, "--l1"),
        ("jumprelu", {"bandwidth": 0.0}, "--bandwidth"),
        ("topk", {"k": 4, "loss": "l2"}, "--loss"),
        ("topk", {"k": 4, "scale_mode": "x"}, "--scale-mode"),
        ("bogus", {}, "--variant"),
        ("matryoshka", {"k": 4}, "--k: unknown option for variant matryoshka"),
        ("relu", {"nesting": [2, 4]}, "--nesting"),
    ],
)
def test_bad_configs_are_refused_with_the_parameter_named(variant, kw, needle):
    with pytest.raises(MsaeError, match=re.escape(needle)):
        make_config(variant, 16, 4, **kw)


# ------------------------------------------------------------------ the load() contract
@pytest.mark.parametrize(
    "variant, kw",
    [
        ("topk", {"k": 3}),
        ("batchtopk", {"k": 3}),
        ("matryoshka", {"nesting": [2, 8, 32]}),
        ("relu", {}),
        ("jumprelu", {}),
    ],
)
def test_save_load_round_trip_and_raw_space_contract(tmp_path, variant, kw):
    model = _model(variant, **kw).eval()
    if variant == "batchtopk":
        model.threshold.fill_(0.2)
    save(model, tmp_path, {"final_dead_latents": 0})
    loaded = load(tmp_path, device="cpu")
    assert not loaded.training and loaded.config == model.config
    x = torch.randn(10, 8) * 3 + 1
    for name in ("pre_activation", "encode", "encode_dense"):
        torch.testing.assert_close(getattr(loaded, name)(x), getattr(model, name)(x))
    # Independent raw-space computation: preprocess, encode, decode back.
    xs = (x - loaded.mean) * loaded.scale
    a = (xs - loaded.b_pre) @ loaded.W_enc + loaded.b_enc
    torch.testing.assert_close(loaded.pre_activation(x), a)
    torch.testing.assert_close(loaded.encode_dense(x), a.clamp_min(0))
    z = loaded.encode(x, k=2)
    np.testing.assert_array_equal((z > 0).sum(1).numpy(), np.minimum(2, (a > 0).sum(1).numpy()))
    x_hat, z_sparse = loaded(x)
    torch.testing.assert_close(x_hat, (z_sparse @ loaded.W_dec + loaded.b_pre) / loaded.scale + loaded.mean)
    torch.testing.assert_close(loaded.atoms_raw_direction(), loaded.W_dec / loaded.scale)
    if variant == "matryoshka":
        assert loaded.sparse_levels() == [2, 8, 32]
        assert ((z_sparse > 0).sum(1) <= 2).all()
    if variant == "batchtopk":  # the inference threshold, batch-independent
        torch.testing.assert_close(z_sparse, torch.where(a > 0.2, a, torch.zeros_like(a)))
        torch.testing.assert_close(loaded.encode(x[:1]), z_sparse[:1])
    assert loaded.record is not None and loaded.record.final_dead_latents == 0


def test_load_refuses_unfinished_run(tmp_path):
    with pytest.raises(MsaeError, match="config.json"):
        load(tmp_path)


def test_config_round_trips_through_dict():
    cfg = make_config("matryoshka", 16, 4, nesting_start=4, weighting="uw", inner="batchtopk")
    assert SAEConfig.from_dict({**cfg.to_dict(), "data": {}, "schema_version": 1}) == cfg
