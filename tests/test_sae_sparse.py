"""The sparse training kernels (msae.sae.sparse) equal the dense computation in loss and gradients.

Two independent oracles, both in float64 on fresh random data: an explicit dense reference written
here (ranks from a full argsort, a masked [B, n] activation per level, a dense decode per level) and
msae's own dense `SparseAutoencoder.objective`. Plus a known answer (an identity dictionary
reconstructs a k-sparse input exactly) and the structural pieces (nested ranking, the transposed
order, the sparse decode) on their own.
"""

from __future__ import annotations

import pytest
import torch

from msae.sae import bands, kernels, sparse

D, N, B = 12, 48, 24
# msae's reconstruction loss is computed in float32 (as the dense objective does), so against the
# float64 reference written here loss and gradients agree to float32 precision; against msae's
# own dense objective, which rounds the same way, they agree to float64 precision.
REF = {"rtol": 1e-5, "atol": 1e-7}
EXACT = {"rtol": 1e-10, "atol": 1e-12}
PAPER_LIKE = [2, 4, 8, 16, 32, 48]  # doubling from 2, then n: the last level is plain ReLU
SPARSE_ONLY = [2, 5, 9]
BACKENDS = list(kernels.BACKENDS)
ENCODER_BACKWARDS = list(sparse.ENCODER_BACKWARDS)


def random_params(seed: int, d: int = D, n: int = N) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    w_dec = torch.randn(n, d, generator=g, dtype=torch.float64)
    w_dec /= w_dec.norm(dim=1, keepdim=True)
    w_enc = (w_dec.T + 0.3 * torch.randn(d, n, generator=g, dtype=torch.float64)).contiguous()
    b_enc = 0.2 * torch.randn(n, generator=g, dtype=torch.float64)
    b_pre = 0.2 * torch.randn(d, generator=g, dtype=torch.float64)
    return [p.requires_grad_() for p in (w_enc, b_enc, w_dec, b_pre)]


def random_x(seed: int, batch: int = B, d: int = D) -> torch.Tensor:
    return torch.randn(batch, d, generator=torch.Generator().manual_seed(1000 + seed), dtype=torch.float64)


def reference_objective(x, w_enc, b_enc, w_dec, b_pre, ks, weights, over_batch, loss="nmse"):
    """Dense float64 reference, independent of msae: rank by a full descending argsort."""
    a = (x - b_pre) @ w_enc + b_enc
    view = a.detach().reshape(1, -1) if over_batch else a.detach()
    rank = torch.empty_like(view, dtype=torch.int64).scatter_(
        1, view.argsort(dim=1, descending=True), torch.arange(view.shape[1]).expand_as(view)
    )
    rank = rank.view_as(a)
    total, x_sq = 0.0, x.square().sum(-1)
    recons, levels = [], []
    for k, w in zip(ks, weights):
        count = k * len(x) if over_batch else k
        z = torch.where((rank < count) & (a > 0), a, torch.zeros_like(a))
        r = z @ w_dec + b_pre
        err = (r - x).square().sum(-1)
        total = total + w * ((err / x_sq).mean() if loss == "nmse" else err.mean() / x.shape[1])
        recons.append(r)
        levels.append(z)
    return total / sum(weights), recons[0], levels


def grads(loss: torch.Tensor, params: list[torch.Tensor]) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, params))


def assert_same(got: list[torch.Tensor], want: list[torch.Tensor], tol: dict) -> None:
    for g, w, name in zip(got, want, ("W_enc", "b_enc", "W_dec", "b_pre")):
        torch.testing.assert_close(g, w, **tol, msg=lambda m, name=name: f"gradient of {name}: {m}")


def run_sparse(
    x,
    params,
    ks,
    weights,
    over_batch,
    backend,
    encoder_backward,
    loss="nmse",
    dense_fraction=bands.DENSE_BAND_FRACTION,
):
    return sparse.nested_objective(x, *params, ks, weights, over_batch, loss, backend, encoder_backward, dense_fraction)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("encoder_backward", ENCODER_BACKWARDS)
@pytest.mark.parametrize("over_batch", [False, True], ids=["topk", "batchtopk"])
@pytest.mark.parametrize("k", [1, 3, N])
def test_topk_equals_dense_reference(backend, encoder_backward, over_batch, k):
    seed = 7 * k + over_batch
    params, x = random_params(seed), random_x(seed)
    got = run_sparse(x, params, [k], [1.0], over_batch, backend, encoder_backward)
    want_loss, want_x_hat, want_levels = reference_objective(x, *params, [k], [1.0], over_batch)
    torch.testing.assert_close(got.loss.double(), want_loss, **REF)
    torch.testing.assert_close(got.x_hat, want_x_hat, rtol=1e-12, atol=1e-12)
    assert torch.equal(got.latent_counts, (want_levels[-1] > 0).sum(0))
    assert_same(grads(got.loss, params), grads(want_loss, params), REF)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("over_batch", [False, True], ids=["inner-topk", "inner-batchtopk"])
@pytest.mark.parametrize("weighting", ["rw", "uw"])
@pytest.mark.parametrize(
    "nesting,dense_fraction",
    [
        (PAPER_LIKE, bands.DENSE_BAND_FRACTION),  # dense tail and dense middle bands
        (PAPER_LIKE, 1.0),  # every band below n sparse, only the ReLU rest dense
        (SPARSE_ONLY, 1.0),  # every band sparse: the sparse encoder backward
        (SPARSE_ONLY, 0.05),  # every band dense
    ],
    ids=["paper-like", "sparse-bands+relu", "all-sparse", "all-dense"],
)
def test_matryoshka_equals_dense_reference(backend, over_batch, weighting, nesting, dense_fraction):
    h = len(nesting)
    weights = [float(h - i) for i in range(h)] if weighting == "rw" else [1.0] * h
    seed = 3 * h + 11 * over_batch + (weighting == "rw")
    params, x = random_params(seed), random_x(seed)
    for encoder_backward in ENCODER_BACKWARDS:
        got = run_sparse(
            x, params, nesting, weights, over_batch, backend, encoder_backward, dense_fraction=dense_fraction
        )
        want_loss, want_x_hat, want_levels = reference_objective(x, *params, nesting, weights, over_batch)
        torch.testing.assert_close(got.loss.double(), want_loss, **REF)
        torch.testing.assert_close(got.x_hat, want_x_hat, rtol=1e-12, atol=1e-12)
        assert torch.equal(got.latent_counts, (want_levels[-1] > 0).sum(0))
        assert_same(grads(got.loss, params), grads(want_loss, params), REF)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("nesting", [[6], SPARSE_ONLY, PAPER_LIKE], ids=["topk", "all-sparse", "paper-like"])
def test_mostly_negative_pre_activations(backend, nesting):
    """A strongly negative encoder bias leaves rows with fewer positive pre-activations than k:
    the ranked-but-negative entries must carry neither value nor gradient (the ReLU)."""
    params, x = random_params(21), random_x(21)
    with torch.no_grad():
        params[1] -= 2.5
    weights = [1.0 + i for i in range(len(nesting))]
    for over_batch in (False, True):
        got = run_sparse(x, params, nesting, weights, over_batch, backend, "sparse", dense_fraction=0.3)
        want_loss, _, want_levels = reference_objective(x, *params, nesting, weights, over_batch)
        assert (want_levels[0] > 0).sum(1).min() < nesting[0]  # the case is real: some row is short
        torch.testing.assert_close(got.loss.double(), want_loss, **REF)
        assert_same(grads(got.loss, params), grads(want_loss, params), REF)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("over_batch", [False, True], ids=["inner-topk", "inner-batchtopk"])
@pytest.mark.parametrize(
    "shift,every_row_positive",
    [(-15.0, 0), (-1.5, None), (0.0, None), (0.8, None), (15.0, N)],
    ids=["none", "few", "half", "most", "all"],
)
def test_matryoshka_clipped_to_the_positives_equals_reference(backend, over_batch, shift, every_row_positive):
    """On the CPU the levels are clipped to the batch's most positive pre-activations per row: an
    encoder bias shifted from 'no latent positive' to 'every latent positive' moves the clip from
    one entry to no clip at all, and loss and gradients stay the dense reference's."""
    params, x = random_params(31), random_x(31)
    with torch.no_grad():
        params[1] += shift
    weights = [float(len(PAPER_LIKE) - i) for i in range(len(PAPER_LIKE))]
    got = run_sparse(x, params, PAPER_LIKE, weights, over_batch, backend, "sparse", dense_fraction=0.3)
    want_loss, want_x_hat, want_levels = reference_objective(x, *params, PAPER_LIKE, weights, over_batch)
    if every_row_positive is not None:  # the extreme case is real
        assert ((want_levels[-1] > 0).sum(1) == every_row_positive).all()
    torch.testing.assert_close(got.loss.double(), want_loss, **REF)
    torch.testing.assert_close(got.x_hat, want_x_hat, rtol=1e-12, atol=1e-12)
    assert torch.equal(got.latent_counts, (want_levels[-1] > 0).sum(0))
    assert_same(grads(got.loss, params), grads(want_loss, params), REF)


def test_plan_clipped_to_the_positives():
    """Levels past the positives collapse: their bands are empty (no work), the last non-empty
    band ends the ranking, and a plan with only narrow bands left is all sparse."""
    plan = bands.make_plan(4, N, PAPER_LIKE, False, "hybrid", 0.3, torch.tensor([3, 20, 0, 11]))
    assert plan.counts == [2, 4, 8, 16, 20, 20]
    assert [plan.is_empty(i) for i in range(6)] == [False] * 5 + [True]
    assert plan.sparse_bands == [0, 1, 2, 3, 4] and plan.all_sparse
    wide = bands.make_plan(4, N, PAPER_LIKE, False, "hybrid", 0.3, torch.tensor([40]))
    assert wide.counts == [2, 4, 8, 16, 32, 40] and wide.sparse_bands == [0, 1, 2, 3, 5]
    assert wide._rank_counts() == [2, 4, 8, 16, 32, 40]  # the dense band [16, 32) needs its end
    rest = bands.make_plan(4, N, PAPER_LIKE, False, "hybrid", 0.1, torch.tensor([40]))
    assert rest.sparse_bands == [0, 1, 2] and rest._rank_counts() == [2, 4, 8, 16, 32]
    assert bands.make_plan(4, N, PAPER_LIKE, False, "hybrid", row_positives=torch.tensor([0])).counts == [1] * 6


def test_mse_loss_equals_reference():
    params, x = random_params(5), random_x(5)
    got = run_sparse(x, params, SPARSE_ONLY, [3.0, 2.0, 1.0], False, "hybrid", "sparse", loss="mse")
    want, _, _ = reference_objective(x, *params, SPARSE_ONLY, [3.0, 2.0, 1.0], False, loss="mse")
    torch.testing.assert_close(got.loss.double(), want, **REF)
    assert_same(grads(got.loss, params), grads(want, params), REF)


# ---------------------------------------------------------------- against msae's dense model
def dense_model(variant: str, options: dict, params: list[torch.Tensor]):
    """msae's dense SparseAutoencoder in float64 holding `params` (the one adapter to its API)."""
    from msae.sae import SparseAutoencoder, make_config

    model = SparseAutoencoder(make_config(variant, D, N / D, **options)).double()
    with torch.no_grad():
        for name, p in zip(("W_enc", "b_enc", "W_dec", "b_pre"), params):
            getattr(model, name).copy_(p)
    return model, [model.W_enc, model.b_enc, model.W_dec, model.b_pre]


@pytest.mark.parametrize(
    "variant,options,ks,weights,over_batch",
    [
        ("topk", {"k": 3}, [3], [1.0], False),
        ("batchtopk", {"k": 3}, [3], [1.0], True),
        (
            "matryoshka",
            {"nesting": PAPER_LIKE, "weighting": "rw", "inner": "topk"},
            PAPER_LIKE,
            [6.0, 5, 4, 3, 2, 1],
            False,
        ),
        ("matryoshka", {"nesting": PAPER_LIKE, "weighting": "uw", "inner": "batchtopk"}, PAPER_LIKE, [1.0] * 6, True),
        ("matryoshka", {"nesting": SPARSE_ONLY, "weighting": "rw", "inner": "topk"}, SPARSE_ONLY, [3.0, 2, 1], False),
    ],
)
def test_equals_msae_dense_objective(variant, options, ks, weights, over_batch):
    params, x = random_params(42), random_x(42)
    model, model_params = dense_model(variant, options, params)
    want = model.objective(x, dense=True)
    got = run_sparse(x, params, ks, weights, over_batch, None, "sparse")
    torch.testing.assert_close(got.loss, want.loss, rtol=1e-6, atol=0)  # float32 sums in another order
    torch.testing.assert_close(got.x_hat, want.x_hat, rtol=1e-12, atol=1e-12)
    assert torch.equal(got.latent_counts, want.latent_counts)
    assert_same(grads(got.loss, params), grads(want.loss, model_params), EXACT)
    torch.testing.assert_close(got.kept_min, want.kept_min)


# ---------------------------------------------------------------- known answers
def test_identity_dictionary_reconstructs_k_sparse_input_exactly():
    """W_enc = W_dec = I, zero biases, x with 3 positive entries: top-3 is exact (loss 0), top-2
    misses exactly the smallest entry, so its NMSE is that entry squared over ||x||^2."""
    d = n = 6
    eye = torch.eye(n, dtype=torch.float64)
    params = [
        eye.clone().requires_grad_(),
        torch.zeros(n, dtype=torch.float64, requires_grad=True),
        eye.clone().requires_grad_(),
        torch.zeros(d, dtype=torch.float64, requires_grad=True),
    ]
    x = torch.tensor([[0.0, 3.0, 0.0, 1.0, 2.0, 0.0], [5.0, 0.0, 4.0, 0.0, 0.0, 0.5]], dtype=torch.float64)
    exact = sparse.nested_objective(x, *params, [3], [1.0])
    assert exact.loss.item() == 0.0
    assert exact.latent_counts.tolist() == [1, 1, 1, 1, 1, 1]
    short = sparse.nested_objective(x, *params, [2, 3], [1.0, 0.0])
    want = ((1.0 / 14.0) + (0.25 / 41.25)) / 2
    assert short.loss.item() == pytest.approx(want, rel=1e-6)  # the loss is summed in float32
    assert short.kept_min.item() == pytest.approx(2.0)


# ---------------------------------------------------------------- the pieces
@pytest.mark.parametrize(
    "rows,counts",
    [(1, [3, 10, 50, 120]), (5, [3, 10, 50, 120]), (1, [3, 10, 40]), (1, [7])],
    ids=["one-row", "rows", "one-row-in-chunks", "one-level-in-chunks"],
)
def test_nested_rank_prefixes_are_the_top_sets(rows, counts):
    """Including BatchTopK's single row, whose top-k the CPU takes in chunks when k is small."""
    g = torch.Generator().manual_seed(rows)
    view = torch.randn(rows, 200, generator=g, dtype=torch.float64)
    ranked = bands.nested_rank(view, counts)
    order = view.argsort(dim=1, descending=True)
    for c in counts:
        got = ranked[:, :c].sort(dim=1).values
        assert torch.equal(got, order[:, :c].sort(dim=1).values), f"prefix {c}"


@pytest.mark.parametrize("n_cols", [20, 40_000], ids=["int16-keys", "int32-keys"])
@pytest.mark.parametrize("rows_sorted", [True, False], ids=["stable-sort", "key-sort"])
def test_column_order_lists_entries_latent_by_latent(rows_sorted, n_cols):
    """Latents past int16's range too: the stable sort runs on the narrowest keys that hold them."""
    g = torch.Generator().manual_seed(3)
    n_rows, per_row = 30, 6
    cols = torch.stack([torch.randperm(n_cols, generator=g)[:per_row] for _ in range(n_rows)]).reshape(-1)
    rows = torch.arange(n_rows).repeat_interleave(per_row)
    if not rows_sorted:
        shuffle = torch.randperm(len(cols), generator=g)
        rows, cols = rows[shuffle], cols[shuffle]
    pointers, perm = kernels.column_order(rows, cols, n_rows, n_cols, rows_sorted=rows_sorted)
    assert sorted(perm.tolist()) == list(range(len(cols)))
    keys = (cols * n_rows + rows)[perm]
    assert torch.all(keys[1:] > keys[:-1])
    assert torch.equal(pointers[1:] - pointers[:-1], torch.bincount(cols, minlength=n_cols))


@pytest.mark.parametrize(
    ("bound", "dtype"),
    [(1, torch.int16), (2**15, torch.int16), (2**15 + 1, torch.int32), (2**31, torch.int32), (2**31 + 1, torch.int64)],
)
def test_narrowest_int_holds_every_value_below_the_bound(bound, dtype):
    assert kernels.narrowest_int(bound) == dtype


@pytest.mark.parametrize("backend", BACKENDS)
def test_sparse_decode_with_repeated_and_unordered_entries(backend):
    """Entries in arbitrary order, a latent twice in one row: value and gradients equal the dense
    product Z W with Z built by accumulation."""
    g = torch.Generator().manual_seed(11)
    n_rows, n, d, entries = 7, 9, 5, 30
    rows = torch.randint(0, n_rows, (entries,), generator=g)
    cols = torch.randint(0, n, (entries,), generator=g)
    values = torch.randn(entries, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(n, d, generator=g, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(n_rows, d, generator=g, dtype=torch.float64)
    out = kernels.sparse_decode(values, weight, kernels.Pattern(rows, cols, n_rows, n, backend))
    dense = torch.zeros(n_rows, n, dtype=torch.float64).index_put((rows, cols), values, accumulate=True)
    want = dense @ weight
    torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-12)
    got_grads = torch.autograd.grad(out, (values, weight), upstream)
    want_grads = torch.autograd.grad(want, (values, weight), upstream)
    for got_g, want_g in zip(got_grads, want_grads):
        torch.testing.assert_close(got_g, want_g, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("rows_sorted", [True, False])
@pytest.mark.parametrize("tile_rows", [2, 4, 9, 12])
def test_sampled_dot_tiled_over_a_large_right_side(monkeypatch, rows_sorted, tile_rows):
    """A `right` side larger than the cache is read tile by tile (here made small): every entry's
    dot product equals the float64 one, with tiles of two rows, tiles with no entries and a
    partial last tile; entries in row order or in any order, repeats included. A right side whose
    rows serve few entries each is read in one product."""
    n_rows, n, d, entries = 6, 37, 5, 60
    g = torch.Generator().manual_seed(13)
    rows = torch.randint(0, n_rows, (entries,), generator=g)
    cols = torch.randint(0, n, (entries,), generator=g)
    cols[(cols >= 20) & (cols < 28)] -= 10  # latents 20..27 have no entries: empty tiles
    if rows_sorted:
        rows = rows.sort().values
    left = torch.randn(n_rows, d, generator=g, dtype=torch.float64)
    right = torch.randn(n, d, generator=g, dtype=torch.float64)
    monkeypatch.setattr(kernels, "SAMPLED_TILE_BYTES", tile_rows * d * 8)
    monkeypatch.setattr(kernels, "SAMPLED_TILE_MIN_USES", 1)
    assert right.numel() * 8 > 3 * kernels.SAMPLED_TILE_BYTES and entries >= n
    tiled = []
    monkeypatch.setattr(
        kernels.Pattern,
        "_tiled_sampled_dot",
        lambda self, *a, f=kernels.Pattern._tiled_sampled_dot: tiled.append(a[-1]) or f(self, *a),
    )
    for backend in ("csr", "hybrid"):
        got = kernels.Pattern(rows, cols, n_rows, n, backend, rows_sorted=rows_sorted).sampled_dot(left, right)
        torch.testing.assert_close(got, (left[rows] * right[cols]).sum(1), rtol=1e-12, atol=1e-12)
    assert tiled == [tile_rows, tile_rows]
    monkeypatch.setattr(kernels, "SAMPLED_TILE_MIN_USES", 2)  # fewer entries than 2 per row of `right`
    kernels.Pattern(rows, cols, n_rows, n, "csr", rows_sorted=rows_sorted).sampled_dot(left, right)
    monkeypatch.setattr(kernels, "SAMPLED_TILE_MIN_USES", 1)
    monkeypatch.setattr(kernels, "SAMPLED_TILE_BYTES", right.numel() * 8 // 2)  # `right` spans 2 tiles
    kernels.Pattern(rows, cols, n_rows, n, "csr", rows_sorted=rows_sorted).sampled_dot(left, right)
    assert len(tiled) == 2


def test_inference_helpers_match_dense_selection():
    g = torch.Generator().manual_seed(4)
    a = torch.randn(10, 30, generator=g, dtype=torch.float64)
    w_dec = torch.randn(30, 4, generator=g, dtype=torch.float64)
    b_pre = torch.randn(4, generator=g, dtype=torch.float64)
    idx, values = sparse.topk_latents(a, 5)
    z = torch.zeros_like(a).scatter_(1, idx, values)
    top = a.topk(5, dim=1).indices
    want = torch.zeros_like(a).scatter_(1, top, a.gather(1, top)).clamp_min(0)
    torch.testing.assert_close(z, want)
    rows = torch.arange(10).repeat_interleave(5)
    torch.testing.assert_close(
        sparse.decode_latents(rows, idx.reshape(-1), values.reshape(-1), w_dec, b_pre, 10), z @ w_dec + b_pre
    )


def test_cpu_autocast_computes_in_the_weights_dtype():
    params = [p.detach().float().requires_grad_() for p in random_params(9)]
    x = random_x(9).float()
    plain = sparse.nested_objective(x, *params, [3], [1.0])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = sparse.nested_objective(x, *params, [3], [1.0])
    torch.testing.assert_close(under.loss, plain.loss)


def test_bad_arguments_raise():
    params, x = random_params(1), random_x(1)
    with pytest.raises(ValueError, match="weights"):
        sparse.nested_objective(x, *params, [2, 4], [1.0])
    with pytest.raises(ValueError, match="strictly increasing"):
        sparse.nested_objective(x, *params, [4, 2], [1.0, 1.0])
    with pytest.raises(ValueError, match="backend"):
        sparse.nested_objective(x, *params, [2], [1.0], backend="nope")
    with pytest.raises(ValueError, match="encoder backward"):
        sparse.nested_objective(x, *params, [2], [1.0], encoder_backward="nope")
