"""CKNNA against a literal dense float64 implementation of the definition (docs/paper.md)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from msae.metrics import alignment


def _hsic_dense(K: np.ndarray, L: np.ndarray) -> float:
    m = K.shape[0]
    Kt, Lt = K.copy(), L.copy()
    np.fill_diagonal(Kt, 0)
    np.fill_diagonal(Lt, 0)
    return ((Kt * Lt.T).sum() + Kt.sum() * Lt.sum() / ((m - 1) * (m - 2)) - 2 * (Kt @ Lt).sum() / (m - 2)) / (
        m * (m - 3)
    )


def _knn_mask(M: np.ndarray, k: int) -> np.ndarray:
    m = M.shape[0]
    mask = np.zeros_like(M)
    for i in range(m):
        others = [j for j in range(m) if j != i]
        best = sorted(others, key=lambda j: -M[i, j])[:k]
        mask[i, best] = 1
    return mask


def cknna_dense(A: np.ndarray, B: np.ndarray, k: int) -> float:
    K, L = A @ A.T, B @ B.T
    mK, mL = _knn_mask(K, k), _knn_mask(L, k)
    kl = _hsic_dense(mK * mL * K, mK * mL * L)
    return kl / np.sqrt(_hsic_dense(mK * K, mK * K) * _hsic_dense(mL * L, mL * L))


def _pair(seed: int, m: int = 120, d: int = 12, n: int = 48):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(m, d))
    B = np.maximum(A @ rng.normal(size=(d, n)) + rng.normal(size=(m, n)), 0)
    return A, B


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cknna_equals_dense_definition(seed):
    A, B = _pair(seed)
    got = alignment.cknna(torch.tensor(A), torch.tensor(B), k=10)
    assert got == pytest.approx(cknna_dense(A, B, 10), abs=1e-10)


def test_cknna_float32_close_to_float64():
    A, B = _pair(3)
    assert alignment.cknna(torch.tensor(A).float(), torch.tensor(B).float(), 10) == pytest.approx(
        cknna_dense(A, B, 10), abs=1e-6
    )


def test_cknna_identical_is_one_and_rotation_invariant():
    A, _ = _pair(4)
    At = torch.tensor(A)
    assert alignment.cknna(At, At, 10) == pytest.approx(1.0, abs=1e-12)
    q, _ = np.linalg.qr(np.random.default_rng(5).normal(size=(A.shape[1], A.shape[1])))
    assert alignment.cknna(At, torch.tensor(A @ q), 10) == pytest.approx(1.0, abs=1e-9)


def test_cknna_unrelated_is_near_zero_and_related_is_higher():
    rng = np.random.default_rng(6)
    A = rng.normal(size=(400, 16))
    noise = alignment.cknna(torch.tensor(A), torch.tensor(rng.normal(size=(400, 16))), 10)
    A2, B2 = _pair(6, m=400, d=16)
    assert abs(noise) < 0.15
    assert alignment.cknna(torch.tensor(A2), torch.tensor(B2), 10) > noise + 0.2


def test_chunked_knn_graph_equals_unchunked(monkeypatch):
    A, B = _pair(7)
    full = alignment.cknna(torch.tensor(A), torch.tensor(B), 5)
    monkeypatch.setattr(alignment, "CHUNK_ELEMENTS", 3 * A.shape[0] + 1)  # 3-row chunks
    assert alignment.cknna(torch.tensor(A), torch.tensor(B), 5) == pytest.approx(full, abs=1e-12)


def test_sparse_kernel_path_matches_dense_definition():
    rng = np.random.default_rng(8)
    A = rng.normal(size=(100, 10))
    B = np.maximum(rng.normal(size=(100, 400)), 0) * (rng.random((100, 400)) < 0.02)
    B[:, :3] += np.abs(A[:, :3])  # every row active somewhere, no all-zero rows (ties)
    B = B.astype(np.float32).astype(np.float64)
    got = alignment.cknna(torch.tensor(A).float(), torch.tensor(B).float(), 10)  # density < 5%: CSR product
    assert got == pytest.approx(cknna_dense(A, B, 10), abs=1e-5)


def test_sparse_hsic_equals_dense_hsic_on_random_pattern():
    rng = np.random.default_rng(9)
    m = 30
    pattern = rng.random((m, m)) < 0.2
    np.fill_diagonal(pattern, False)
    K, L = rng.normal(size=(m, m)) * pattern, rng.normal(size=(m, m)) * pattern
    rows, cols = np.nonzero(pattern)
    got = alignment.hsic_unbiased_masked(
        torch.tensor(rows), torch.tensor(cols), torch.tensor(K[rows, cols]), torch.tensor(L[rows, cols]), m
    )
    assert got == pytest.approx(_hsic_dense(K, L), abs=1e-12)


def test_cknna_rejects_bad_k():
    with pytest.raises(ValueError):
        alignment.cknna(torch.zeros(5, 2), torch.zeros(5, 2), k=5)


@pytest.mark.parametrize("case", ["separated", "near-ties", "zero-rows", "signed", "signed near-ties"])
def test_certified_search_finds_the_exact_neighbours(case):
    """The certified search (int8 bounds for codes, bf16 ones for signed rows) returns the
    neighbours of the exact search, on rows where rounding reorders most rows' neighbours (kernel
    values 0.05% apart) and on all-zero rows (every candidate ties): uncertain rows are searched
    again in float32."""
    rng = np.random.default_rng(7)
    z = np.maximum(rng.normal(size=(300, 64)), 0) * (rng.random((300, 64)) < 0.4)
    if case.startswith("signed"):  # CLIP-like: a common offset and an anisotropic spread
        z = 2.0 + rng.normal(size=(300, 64)) * np.geomspace(1.0, 0.02, 64)
    if case.endswith("near-ties"):
        z = np.repeat(z[:30], 10, axis=0) * (1 + 5e-4 * rng.random((300, 1)))
    if case == "zero-rows":
        z[::7] = 0
    feats = torch.tensor(z, dtype=torch.float32)
    z = feats.double().numpy()  # the float32 values, exactly
    exact = alignment.knn_graph(feats, 10, certified=False)
    fast = alignment.knn_graph(feats, 10, certified=True)
    ref = np.argsort(-(z @ z.T - np.diag(np.full(300, np.inf))), axis=1, kind="stable")[:, :10]
    ties = case == "zero-rows"
    for graph in (exact, fast):
        same = [set(a) == set(b) for a, b in zip(graph.idx.tolist(), ref.tolist())]
        assert all(same) or (ties and all(s for i, s in enumerate(same) if i % 7)), case
        np.testing.assert_allclose(graph.vals.numpy(), np.take_along_axis(z @ z.T, graph.idx.numpy(), 1), rtol=1e-6)
    torch.testing.assert_close(fast.vals.sort(1).values, exact.vals.sort(1).values, rtol=1e-6, atol=0)


@pytest.mark.parametrize("kind", ["float64", "csr", "int8", "bf16"])
@pytest.mark.parametrize("block", [1, 7, 40])
def test_block_search_finds_the_brute_force_neighbours(monkeypatch, kind, block):
    """The symmetric block search (each block computed once, feeding its rows and its columns)
    returns every row's exact neighbours for each kernel path, with blocks smaller than the
    candidate list, a partial last block and a single block; the kernel values are the exact ones."""
    monkeypatch.setattr(alignment, "CHUNK_ELEMENTS", block * block)
    rng = np.random.default_rng(11)
    m = 83
    if kind in ("float64", "bf16"):
        feats = torch.tensor(rng.normal(size=(m, 9)), dtype=torch.float64 if kind == "float64" else torch.float32)
    else:
        density = 0.004 if kind == "csr" else 0.4
        z = rng.random((m, 600)) * (rng.random((m, 600)) < density)
        z[:, :4] += rng.random((m, 4))  # no all-zero rows: no ties
        feats = torch.tensor(z, dtype=torch.float32)
        assert (float((feats != 0).float().mean()) < alignment.CSR_DENSITY) == (kind == "csr")
    graph = alignment.knn_graph(feats, 10, certified=kind in ("int8", "bf16"))
    exact = feats.double().numpy()
    gram = exact @ exact.T
    ref = np.argsort(-(gram - np.diag(np.full(m, np.inf))), axis=1, kind="stable")[:, :10]
    assert [set(r) for r in graph.idx.tolist()] == [set(r) for r in ref.tolist()]
    np.testing.assert_allclose(graph.vals.numpy(), np.take_along_axis(gram, graph.idx.numpy(), 1), rtol=1e-6)


def _assert_exact_graph(graph: alignment.KnnGraph, feats: torch.Tensor) -> None:
    """`graph` holds each row's exact k nearest neighbours first, the exact kernel at every
    candidate, and a ceiling that no non-candidate's exact kernel value exceeds."""
    exact = feats.double().numpy()
    gram = exact @ exact.T
    np.fill_diagonal(gram, -np.inf)
    ref = np.argsort(-gram, axis=1, kind="stable")[:, : graph.k]
    assert [set(r) for r in graph.idx.tolist()] == [set(r) for r in ref.tolist()]
    cand = graph.candidates.numpy()
    np.testing.assert_allclose(graph.values.numpy(), np.take_along_axis(gram, cand, 1), rtol=1e-6)
    outside = np.ones_like(gram, dtype=bool)
    np.put_along_axis(outside, cand, False, axis=1)
    np.fill_diagonal(outside, False)
    over = gram - graph.ceiling.numpy()[:, None]
    assert (over[outside] <= 1e-6 * np.abs(gram[outside]) + 1e-12).all()


def _codes(rng: np.random.Generator, m: int = 300, n: int = 64) -> np.ndarray:
    """Anisotropic non-negative codes: a few strong latents, many weak ones."""
    scale = np.geomspace(3.0, 0.05, n)
    return np.maximum(rng.normal(size=(m, n)) * scale, 0) * (rng.random((m, n)) < 0.4)


@pytest.mark.parametrize("kind", ["float64", "csr", "int8", "bf16"])
def test_every_search_path_keeps_exact_candidates_under_its_ceiling(monkeypatch, kind):
    rng = np.random.default_rng(3)
    z = _codes(rng) * (rng.random((300, 64)) < (0.03 if kind == "csr" else 1.0))
    z[:, 0] += 0.1 + rng.random(300)  # no all-zero rows, no ties
    if kind == "bf16":
        z -= 0.2 * rng.random((300, 64))  # signed rows
    feats = torch.tensor(z, dtype=torch.float64 if kind == "float64" else torch.float32)
    bounds = []
    monkeypatch.setattr(
        alignment,
        "_KernelBlocks",
        lambda f, size, bound, *rest, c=alignment._KernelBlocks: bounds.append(type(bound)) or c(f, size, bound, *rest),
    )
    graph = alignment.knn_graph(feats, 10, certified=kind in ("int8", "bf16"))
    _assert_exact_graph(graph, feats)
    expected = {"int8": alignment.Quantized, "bf16": alignment.Rounded}.get(kind, type(None))
    assert bounds == [expected]


@pytest.mark.parametrize("certified", [False, True])
@pytest.mark.parametrize("change", ["top-k rows", "rows scaled up", "rows zeroed", "most rows"])
def test_updated_graph_equals_a_new_search(certified, change):
    """A code that differs from the dense one on a few rows (a progressive top-k where only some
    samples have more positive latents than k): updating the dense graph finds the exact
    neighbours, whether the changed rows shrink (others lose them as neighbours), grow (they
    become everyone's neighbours), vanish, or are too many (a new search)."""
    rng = np.random.default_rng(5)
    base = _codes(rng)
    base[:, 0] += 0.1 + rng.random(300)
    new = base.copy()
    share = 0.5 if change == "most rows" else 0.04
    changed = np.sort(rng.choice(len(base), int(share * len(base)), replace=False))
    if change in ("top-k rows", "most rows"):
        keep = np.argsort(-base[changed], axis=1)[:, :5]
        new[changed] = 0
        new[changed[:, None], keep] = base[changed[:, None], keep]
    elif change == "rows scaled up":
        new[changed] *= 3.0
    else:
        new[changed] = 0
        new[changed, 0] = 1e-3 * (1 + np.arange(len(changed)))  # distinct, no ties
    dense = alignment.knn_graph(torch.tensor(base, dtype=torch.float32), 10, certified=certified)
    feats = torch.tensor(new, dtype=torch.float32)
    updated = alignment.update_knn_graph(dense, feats, torch.tensor(changed))
    _assert_exact_graph(updated, feats)
    if change != "most rows":  # the update touched the candidates of rows next to the change
        assert torch.isin(dense.idx, torch.tensor(changed)).any()


# CSR blocks have half the side of the others: 7 rows (a partial last one), 23, 300 (one block)
@pytest.mark.parametrize(("side", "block"), [(14, 7), (46, 23), (600, 300)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_top_k_code_searched_from_its_entries(monkeypatch, side, block, dtype):
    """A top-k code's CSR blocks come from its (index, values) entries, unsorted and with zeros
    where a row has fewer positives than k: the graph holds the exact neighbours, with several
    blocks, a partial last one, or one block, and so does a new search that an update falls back to."""
    monkeypatch.setattr(alignment, "CHUNK_ELEMENTS", side * side)
    rng = np.random.default_rng(17)
    m, n, k = 300, 400, 6
    pre = torch.tensor(_codes(rng, m, n) - 0.3 * rng.random((m, n)))
    pre[:, 0] += 0.1 + torch.tensor(rng.random(m))  # no all-zero rows, no ties
    pre[::5, 3:] = -torch.tensor(rng.random((len(pre[::5]), n - 3)))  # rows with 3 positives only
    values, index = pre.topk(k, dim=1, sorted=False)
    values = values.clamp_min(0).to(dtype)
    assert (values == 0).any() and (index.diff(dim=1) < 0).any()
    feats = torch.zeros(m, n, dtype=dtype).scatter_(1, index, values)
    assert float((feats != 0).float().mean()) < min(alignment.CSR_DENSITY_INT8, alignment.CSR_DENSITY)
    built = []
    monkeypatch.setattr(
        alignment._KernelBlocks,
        "_transposed_from_entries",
        lambda self, start, f=alignment._KernelBlocks._transposed_from_entries: built.append(start) or f(self, start),
    )
    entries = alignment.RowEntries(index, values)
    _assert_exact_graph(alignment.knn_graph(feats, 10, entries=entries), feats)
    assert sorted(built) == list(range(0, m, block))
    base = alignment.knn_graph(feats, 10, certified=False)
    changed = torch.arange(0, m, 2)  # too many rows for an update: a new search from the entries
    _assert_exact_graph(alignment.update_knn_graph(base, feats, changed, entries), feats)
    assert len(built) == 2 * len(range(0, m, block))


@pytest.mark.parametrize(("per_row", "width", "csr"), [(3, 100, True), (5, 100, True), (6, 100, False), (3, 25, False)])
def test_csr_path_needs_few_nonzeros_in_all_and_per_row(monkeypatch, per_row, width, csr):
    """CSR products only for codes below CSR_DENSITY nonzeros and at most CSR_MAX_ROW_ENTRIES
    per row (beyond it MKL's product slows several-fold on wide codes); either way the graph is
    exact."""
    monkeypatch.setattr(alignment, "CSR_MAX_ROW_ENTRIES", 5)
    monkeypatch.setattr(alignment, "CSR_DENSITY", 0.1)
    seen = []
    monkeypatch.setattr(
        alignment._KernelBlocks,
        "block",
        lambda self, i, j, f=alignment._KernelBlocks.block: seen.append(self.csr) or f(self, i, j),
    )
    rng = np.random.default_rng(23)
    m = 60
    pre = torch.tensor(rng.random((m, width)) * np.geomspace(2.0, 0.1, width))
    values, index = pre.topk(per_row, dim=1, sorted=False)
    feats = torch.zeros(m, width, dtype=torch.float64).scatter_(1, index, values)
    _assert_exact_graph(alignment.knn_graph(feats, 10, certified=False), feats)
    _assert_exact_graph(
        alignment.knn_graph(feats, 10, certified=False, entries=alignment.RowEntries(index, values)), feats
    )
    assert seen and set(seen) == {csr}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_quantized_codes_bound_the_features_from_above(dtype):
    """int8 codes times their row's scale are >= every feature exactly (float64 check) and at most
    one step above it, zeros stay zero, codes stay within 0..QUANT_LEVELS; so the int8 kernel
    bounds the exact one from above on every pair, up to its stated rounding. Rows include exact
    multiples of the scale (where a rounding down of f / scale would lose the bound), a zero row,
    a single-entry row and heavy-tailed ones."""
    rng = np.random.default_rng(29)
    m, n = 64, 96
    z = _codes(rng, m, n) * rng.lognormal(0.0, 2.0, size=(m, 1))
    z[0] = 0.0
    z[1] = 0.0
    z[1, 5] = 3.7
    peak = z[2].max()
    z[2] = peak / (alignment.QUANT_LEVELS - 0.01) * rng.integers(0, alignment.QUANT_LEVELS, n)
    z[2, 0] = peak
    feats = torch.tensor(z, dtype=dtype)
    codes = alignment.quantize_up(feats)
    assert codes.q.dtype == torch.int8 and int(codes.q.min()) >= 0 and int(codes.q.max()) <= alignment.QUANT_LEVELS
    assert codes.q.shape == (m, n) and n % 4 == 0  # no padding needed here; see the property test for odd widths
    assert bool((codes.q[feats == 0] == 0).all()) and bool((codes.q[feats > 0] > 0).all())
    bound = codes.scale.double()[:, None] * codes.q.double()
    exact = feats.double()
    assert bool((bound >= exact).all())
    assert bool((bound - exact <= codes.scale.double()[:, None] * (1 + 1e-5)).all())
    kern = codes.kernel(slice(0, m), slice(0, m)).double()
    gram = exact @ exact.T
    assert bool((kern * (1 + codes.rounding) >= gram).all())
    assert int(codes.q.max()) == alignment.QUANT_LEVELS  # the scale uses the whole range


@pytest.mark.parametrize("n", [1, 2, 700])
def test_bf16_bound_holds_on_every_pair(n):
    """bf16 products plus their slack bound the exact kernel of signed rows on every pair (float64
    check), on rows with a large common offset (heavy cancellation), anisotropic spreads, a zero
    row, wide rows (the accumulation term) and rows of one or two features, where one rounding
    of each input and of the output is not averaged away; the slack stays a small share of the
    norms."""
    rng = np.random.default_rng(41)
    m = 300
    z = 3.0 + rng.normal(size=(m, n)) * np.geomspace(2.0, 0.01, n) * rng.lognormal(0.0, 1.0, size=(m, 1))
    z[::9] *= -1
    z[5] = 0.0
    feats = torch.tensor(z, dtype=torch.float32)
    bound = alignment.round_bf16(feats)
    kern = bound.upper(bound.kernel(slice(0, m), slice(0, m)))
    exact = feats.double().numpy()
    gram = exact @ exact.T
    assert bool((kern.numpy() >= gram).all())
    norms = np.linalg.norm(exact, axis=1)
    assert ((kern.numpy() - gram) <= 2 * bound.slack * np.outer(norms, norms) + 1e-30).all()
    assert bound.slack < 0.02


def test_certificate_settles_rows_in_two_stages_and_leaves_the_rest_unsure(monkeypatch):
    """`_certify` given valid upper bounds (tight ones, except a few of the lowest rows inflated to
    the top of the ranking): rows whose first `kept` candidates already hold k rows beating the next
    bound are settled on them (row % 3 == 0); rows whose first candidates are inflated ones have all
    their candidates computed, keep the best `kept`, and a ceiling covering the dropped ones too,
    which here beat the last bound (row % 3 == 1); rows with too many inflated candidates stay
    unsure (row % 3 == 2). Every settled row holds its exact neighbours and values."""
    rng = np.random.default_rng(31)
    m, n, k, kept, count, start = 60, 16, 4, 6, 12, 21
    z = _codes(rng, m, n)
    z[:, 0] += 0.5 + rng.random(m)  # no ties
    gram = z @ z.T
    np.fill_diagonal(gram, -np.inf)
    order = np.argsort(-gram, axis=1)  # each row's others by exact value, itself last
    bounds = gram * (1 + 1e-9)
    for i in range(m):
        inflated = {0: 0, 1: kept - k + 1, 2: count - k + 1}[i % 3]
        if inflated:
            deep = order[i, m - 1 - inflated : m - 1]
            bounds[i, deep] = 2 * gram[i, order[i, 0]] + np.arange(inflated)
    cand = np.argsort(-bounds, axis=1)[start:, :count]
    calls = []
    monkeypatch.setattr(
        alignment,
        "sampled_kernel",
        lambda left, right, idx, f=alignment.sampled_kernel: calls.append(len(idx)) or f(left, right, idx),
    )
    top, values, ceiling, unsure = alignment._certify(
        torch.tensor(z), start, torch.tensor(cand), torch.tensor(np.take_along_axis(bounds[start:], cand, 1)), k, kept
    )
    rows = np.arange(start, m)
    assert sorted((start + unsure).tolist()) == [i for i in rows if i % 3 == 2]
    assert calls == [m - start, sum(1 for i in rows if i % 3)]  # the second stage: the unsettled rows only
    for r, i in enumerate(rows):
        if i % 3 == 2:
            continue
        assert set(top[r, :k].tolist()) == set(order[i, :k].tolist())
        np.testing.assert_allclose(values[r].numpy(), gram[i, top[r].numpy()], rtol=1e-12)
        others = np.setdiff1d(np.arange(m), [i, *top[r].tolist()])
        assert gram[i, others].max() <= float(ceiling[r]) * (1 + 1e-12)  # values computed in float64
        if i % 3 == 1:  # a dropped candidate beats the last bound: the ceiling must cover it
            assert gram[i, order[i, kept]] > np.take_along_axis(bounds[i], cand[r], 0).min()


def test_rows_the_certificate_cannot_settle_are_searched_again(monkeypatch):
    """With no candidates beyond k, the last candidate's bound is rarely beaten: those rows are
    searched again in float32 and the graph is still exact."""
    monkeypatch.setattr(alignment, "CANDIDATES_EXTRA", 0)
    monkeypatch.setattr(alignment, "CANDIDATES_KEPT", 0)
    rng = np.random.default_rng(37)
    z = _codes(rng)
    z[:, 0] += 0.1 + rng.random(300)
    feats = torch.tensor(z, dtype=torch.float32)
    searched = []
    monkeypatch.setattr(
        alignment,
        "_search_rows",
        lambda f, rows, c, g=alignment._search_rows: searched.append(len(rows)) or g(f, rows, c),
    )
    _assert_exact_graph(alignment.knn_graph(feats, 10, certified=True), feats)
    assert sum(searched) > 100


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    m=st.integers(12, 70),
    n=st.integers(1, 40),
    k=st.integers(1, 12),
    side=st.sampled_from([1, 3, 8, 25, 1000]),
    kind=st.sampled_from(["codes", "signed", "ties"]),
    certified=st.booleans(),
)
def test_every_search_finds_the_top_values_on_any_shape(seed, m, n, k, side, kind, certified):
    """Any shape, block size, candidate count near m, sign and tie structure (repeated and all-zero
    rows): each row's k neighbour values are the brute-force top k (up to float32 rounding, as
    tied rows may come in either order), and no row outside the candidates exceeds the ceiling."""
    k = min(k, m - 1)
    rng = np.random.default_rng(seed)
    z = 1.5 + rng.normal(size=(m, n)) * np.geomspace(1.0, 0.05, n) if kind == "signed" else _codes(rng, m, n)
    if kind == "ties":
        z[1::2] = z[0::2][: len(z[1::2])]
        z[::5] = 0.0
    feats = torch.tensor(z, dtype=torch.float32)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(alignment, "CHUNK_ELEMENTS", side * side)
        graph = alignment.knn_graph(feats, k, certified=certified)
    exact = feats.double().numpy()
    gram = exact @ exact.T
    np.fill_diagonal(gram, -np.inf)
    norms = np.linalg.norm(exact, axis=1)
    tol = 1e-5 * norms[:, None] * norms.max() + 1e-30  # float32 products of rows of these norms
    top = -np.sort(-gram, axis=1)[:, :k]
    assert (np.abs(-np.sort(-graph.vals.numpy(), axis=1) - top) <= tol).all()
    outside = np.ones_like(gram, dtype=bool)
    np.put_along_axis(outside, graph.candidates.numpy(), False, axis=1)
    np.fill_diagonal(outside, False)
    with np.errstate(invalid="ignore"):  # -inf - -inf on the diagonal, which is not outside
        assert (gram - graph.ceiling.numpy()[:, None] <= tol)[outside].all()


@pytest.mark.parametrize("width", [1, 2, 3, 5])
def test_int8_search_on_narrow_rows(width):
    """Rows of 1-5 features: the int8 codes are padded to a width torch's int8 matmul handles
    (a width of 1 returned garbage), and the search stays exact."""
    rng = np.random.default_rng(43)
    z = 0.2 + rng.random((40, width)) * np.geomspace(1.0, 0.1, width)
    feats = torch.tensor(z, dtype=torch.float32)
    assert alignment.quantize_up(feats).q.shape[1] % 4 == 0
    _assert_exact_graph(alignment.knn_graph(feats, 5, certified=True), feats)
