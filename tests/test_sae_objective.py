"""The training objective as `SparseAutoencoder.objective` / `training_step` compute it: the sparse
kernels against the dense computation (loss, every gradient, counts, one full step), and the
objective, BatchTopK's threshold and AuxK against independent float64 numpy computations."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from test_sae_model import _model

from msae.sae import SparseAutoencoder, sparse
from msae.sae.variants.batchtopk import THRESHOLD_DECAY
from msae.train import training_step

D = 8
PAPER_LIKE = [2, 4, 8, 16, 32]  # n = 32: doubling, the last level is plain ReLU (a dense band)
CASES = [
    ("topk", {"k": 3}),
    ("batchtopk", {"k": 3}),
    ("matryoshka", {"nesting": PAPER_LIKE, "weighting": "rw", "inner": "topk"}),
    ("matryoshka", {"nesting": PAPER_LIKE, "weighting": "uw", "inner": "topk"}),
    ("matryoshka", {"nesting": PAPER_LIKE, "weighting": "rw", "inner": "batchtopk"}),
    ("matryoshka", {"nesting": [2, 5, 9], "weighting": "uw", "inner": "batchtopk"}),  # all bands sparse
]
IDS = ["topk", "batchtopk", "mat-rw-topk", "mat-uw-topk", "mat-rw-btk", "mat-uw-btk-sparse"]
AUXK = {"auxk_alpha": 0.25, "auxk_k": 4}


def double_model(variant: str, kw: dict, seed: int = 0) -> SparseAutoencoder:
    return _model(variant, seed=seed, **kw).double()


def dead_mask(n: int) -> torch.Tensor:
    dead = torch.zeros(n, dtype=torch.bool)
    dead[1::3] = True
    return dead


def batch(seed: int, rows: int = 24) -> torch.Tensor:
    return torch.randn(rows, D, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 1.5


# ---------------------------------------------------------------- numpy float64 references
def np_levels(a: np.ndarray, ks: list[int], over_batch: bool) -> list[np.ndarray]:
    """ReLU(a) at each row's (or the batch's) k largest entries, by a full stable argsort."""
    rows, n = a.shape
    view = a.reshape(1, -1) if over_batch else a
    order = np.argsort(-view, axis=1, kind="stable")
    out = []
    for k in ks:
        keep = np.zeros(view.shape, dtype=bool)
        np.put_along_axis(keep, order[:, : min(k * (rows if over_batch else 1), view.shape[1])], True, axis=1)
        out.append(np.where(keep & (view > 0), view, 0.0).reshape(rows, n))
    return out


def np_params(model: SparseAutoencoder) -> dict[str, np.ndarray]:
    return {k: getattr(model, k).detach().double().numpy() for k in ("W_enc", "b_enc", "W_dec", "b_pre")}


def np_objective(model: SparseAutoencoder, x: np.ndarray, dead: np.ndarray | None) -> tuple[float, float]:
    """(loss, kept minimum of the first level) of TopK / BatchTopK / Matryoshka, written from the
    definitions: levels, per-sample NMSE, alpha-weighted mean, plus alpha_aux * Gao's AuxK."""
    p, cfg, arch = np_params(model), model.config, model.config.arch
    a = (x - p["b_pre"]) @ p["W_enc"] + p["b_enc"]
    if cfg.variant == "matryoshka":
        ks, over = list(arch.nesting), arch.inner == "batchtopk"
        h = len(ks)
        alpha = np.arange(h, 0, -1.0) if arch.weighting == "rw" else np.ones(h)
    else:
        ks, over, alpha = [arch.k], cfg.variant == "batchtopk", np.ones(1)
    levels = np_levels(a, ks, over)
    x_sq = (x**2).sum(1)
    recons = [z @ p["W_dec"] + p["b_pre"] for z in levels]
    nmse = [np.mean(((r - x) ** 2).sum(1) / x_sq) for r in recons]
    loss = float(alpha @ nmse / alpha.sum())
    if dead is not None:
        masked = np.where(dead[None, :], a, -np.inf)
        z_aux = np_levels(masked, [cfg.auxk_k], over_batch=False)[0]
        e = x - recons[-1]
        loss += cfg.auxk_alpha * float(((z_aux @ p["W_dec"] - e) ** 2).sum() / ((e - e.mean(0)) ** 2).sum())
    first = levels[0]
    return loss, float(first[first > 0].min()) if (first > 0).any() else 0.0


# ---------------------------------------------------------------- sparse == dense through the model
@pytest.mark.parametrize("auxk", [False, True], ids=["plain", "auxk"])
@pytest.mark.parametrize("variant, kw", CASES, ids=IDS)
def test_model_objective_sparse_equals_dense_in_loss_gradients_and_counts(variant, kw, auxk):
    x = batch(1)
    models = [double_model(variant, {**kw, **(AUXK if auxk else {})}) for _ in range(2)]
    dead = dead_mask(models[0].config.n_latents) if auxk else None
    got, want = models[0].objective(x, dead), models[1].objective(x, dead, dense=True)
    torch.testing.assert_close(got.loss, want.loss, rtol=1e-6, atol=0)  # float32 sums in another order
    torch.testing.assert_close(got.x_hat, want.x_hat, rtol=1e-12, atol=1e-12)
    assert torch.equal(got.latent_counts, want.latent_counts)
    torch.testing.assert_close(got.kept_min, want.kept_min)
    got.loss.backward()
    want.loss.backward()
    for (name, p), q in zip(models[0].named_parameters(), models[1].parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-10, atol=1e-12, msg=lambda m, name=name: f"{name}: {m}")
    if "threshold" in dict(models[0].named_buffers()):
        torch.testing.assert_close(models[0].threshold, models[1].threshold)


@pytest.mark.parametrize("variant, kw", CASES[:3] + CASES[4:5], ids=IDS[:3] + IDS[4:5])
def test_training_steps_sparse_equal_dense_steps(variant, kw):
    """Three full optimisation steps (renormalisation, projection, clipping, AdamW) on the sparse
    path and on the dense one give the same parameters and state."""
    sparse_model, dense_model = (double_model(variant, {**kw, **AUXK}) for _ in range(2))
    dense_model.objective = functools.partial(SparseAutoencoder.objective, dense_model, dense=True)  # type: ignore[method-assign]
    dead = dead_mask(sparse_model.config.n_latents)
    opts = [
        torch.optim.AdamW(m.parameters(), lr=1e-2, eps=6.25e-10, weight_decay=0) for m in (sparse_model, dense_model)
    ]
    for step in range(3):
        x = batch(10 + step)
        training_step(sparse_model, opts[0], x, dead)
        training_step(dense_model, opts[1], x, dead)
    for (name, p), q in zip(sparse_model.state_dict().items(), dense_model.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-11, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("variant, kw", CASES[:3], ids=IDS[:3])
def test_sparse_variants_train_through_the_sparse_kernels(monkeypatch, variant, kw):
    calls = []
    real = sparse.nested_objective
    monkeypatch.setattr(sparse, "nested_objective", lambda *a, **k: calls.append(1) or real(*a, **k))
    _model(variant, **kw).objective(torch.randn(16, D))
    assert calls == [1]
    _model(variant, **kw).objective(torch.randn(16, D), dense=True)
    assert calls == [1]


# ---------------------------------------------------------------- against float64 numpy
@pytest.mark.parametrize("auxk", [False, True], ids=["plain", "auxk"])
@pytest.mark.parametrize("variant, kw", CASES, ids=IDS)
def test_objective_equals_independent_float64_computation(variant, kw, auxk):
    model = _model(variant, seed=3, **kw, **(AUXK if auxk else {}))
    x = np.random.default_rng(4).standard_normal((40, D)).astype(np.float32) * 1.5
    dead = dead_mask(model.config.n_latents) if auxk else None
    got = model.objective(torch.from_numpy(x), dead)
    want_loss, want_min = np_objective(model, x.astype(np.float64), None if dead is None else dead.numpy())
    assert got.loss.item() == pytest.approx(want_loss, rel=2e-5)
    assert got.kept_min.item() == pytest.approx(want_min, rel=1e-5)


@pytest.mark.parametrize("variant, kw", [CASES[1], CASES[4]], ids=["batchtopk", "mat-rw-btk"])
def test_threshold_is_the_bias_corrected_ema_of_kept_minima(variant, kw):
    """threshold_t = sum_i (1-b) b^(t-i) m_i / (1 - b^t), m_i the smallest kept activation of batch
    i at the smallest level, computed here from the definitions on five batches."""
    model = _model(variant, seed=5, **kw)
    minima = []
    for t in range(5):
        x = np.random.default_rng(20 + t).standard_normal((32, D)).astype(np.float32) * 1.5
        minima.append(np_objective(model, x.astype(np.float64), None)[1])
        model.objective(torch.from_numpy(x))
    b, t = THRESHOLD_DECAY, len(minima)
    ema = sum((1 - b) * b ** (t - 1 - i) * m for i, m in enumerate(minima))
    assert model.threshold.item() == pytest.approx(ema / (1 - b**t), rel=1e-5)
    assert int(model.threshold_updates) == 5
    x = torch.randn(9, D)  # inference: the threshold, batch-independent
    a = model.pre_activation(x)
    torch.testing.assert_close(model.encode(x), torch.where(a > model.threshold, a, torch.zeros_like(a)))
    torch.testing.assert_close(model.encode(x[:1]), model.encode(x)[:1])


# ---------------------------------------------------------------- AuxK
def test_auxk_gradient_reaches_only_dead_latents():
    """The AuxK part of the gradient (with minus without the term) is zero on every live latent's
    encoder column, bias and decoder row, and nonzero on dead latents that were selected."""
    grads = []
    dead = None
    for alpha in (0.0, 0.5):
        model = double_model("topk", {"k": 2, "auxk_alpha": alpha, "auxk_k": 3} if alpha else {"k": 2})
        dead = dead_mask(model.config.n_latents)
        model.objective(batch(7), dead).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    assert dead is not None
    diff = {n: grads[1][n] - grads[0][n] for n in grads[0]}
    assert not diff["W_enc"][:, ~dead].any() and not diff["b_enc"][~dead].any() and not diff["W_dec"][~dead].any()
    assert diff["W_enc"][:, dead].abs().sum(0).gt(0).sum() >= 3 and diff["W_dec"][dead].abs().sum(1).gt(0).sum() >= 3


def test_auxk_is_normalised_by_the_residual_not_the_input():
    """Scaling the residual's target by the same factor as the input leaves Gao's ratio unchanged:
    a dictionary that fits the residual exactly gives 0, and one that outputs nothing gives 1."""
    e = torch.randn(50, D, dtype=torch.float64) + 0.3
    from msae.sae.losses import auxk_loss

    assert auxk_loss(e, e).item() == 0.0
    zero = auxk_loss(torch.zeros_like(e), e).item()
    assert zero == pytest.approx(float((e**2).sum() / ((e - e.mean(0)) ** 2).sum()), rel=1e-6)
    assert auxk_loss(0.5 * e, e).item() == pytest.approx(auxk_loss(50 * e, 100 * e).item(), rel=1e-6)


# ---------------------------------------------------------------- the step's decoder maintenance
def test_training_step_compensates_the_encoder_when_it_renormalises():
    """With lr = 0 the step only renormalises: decoder rows become unit and the encoder columns and
    bias are scaled by the old norms, so a ReLU model's reconstruction is unchanged."""
    model = _model("relu")
    norms = model.W_dec.detach().norm(dim=1)
    assert (norms - 1).abs().mean() > 0.1  # the case is real: rows are far from unit norm
    x = torch.randn(20, D)
    before, w_enc = model.decode(model.encode(x)).detach(), model.W_enc.detach().clone()
    training_step(model, torch.optim.AdamW(model.parameters(), lr=0.0), torch.randn(16, D) * 2)
    torch.testing.assert_close(model.W_enc.detach(), w_enc * norms[None, :])
    torch.testing.assert_close(model.decode(model.encode(x)), before, rtol=1e-5, atol=1e-5)


def test_training_step_hands_the_optimiser_a_tangent_clipped_decoder_gradient():
    model = _model("topk", k=3)
    seen = {}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    real_step = opt.step

    def spy(*args, **kwargs):
        seen["radial"] = (model.W_dec.grad * model.W_dec).sum(1).abs().max().item()
        seen["norm"] = torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.grad is not None]).norm().item()
        return real_step(*args, **kwargs)

    opt.step = spy  # type: ignore[method-assign]
    training_step(model, opt, torch.randn(64, D) * 20, grad_clip=0.01)
    assert seen["radial"] < 1e-7 and seen["norm"] == pytest.approx(0.01, rel=1e-4)
