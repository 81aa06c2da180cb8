"""`msae evaluate` / `msae stability` end to end on small SAEs, checked against whole-set float64
recomputations with the SAE's own maps."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from test_metrics_alignment import cknna_dense

from msae import store
from msae.cli import main
from msae.config.evaluate import EvalOptions
from msae.errors import MsaeError
from msae.evaluation import evaluate, progressive_ks, write_outputs
from msae.metrics import alignment
from msae.sae import SparseAutoencoder, load, make_config, save

D, N_ROWS = 16, 240
META = {"model": "toy", "pretrained": "x", "modality": "image", "dataset": "toy", "split": "test"}


def _make_sae(tmp_path, variant="topk", seed=0, **kw):
    if variant == "topk":
        kw.setdefault("k", 16)
    torch.manual_seed(seed)
    model = SparseAutoencoder(make_config(variant, D, 4, **kw))
    with torch.no_grad():
        model.W_enc.normal_(0, 0.3)
        model.b_enc.normal_(0, 0.1)
        model.W_dec.copy_(torch.nn.functional.normalize(model.W_enc.T.clone() + 0.05 * torch.randn(64, D), dim=1))
    model.set_statistics(torch.randn(D) * 0.5, 0.7)
    info = {"final_dead_latents": 3, "data": {"model": "toy", "pretrained": "x"}}
    return save(model, tmp_path / f"sae_{variant}_{seed}", info)


def _store(path, x, labels=None, meta=META, ids=None):
    ids = ids if ids is not None else [f"r{i}" for i in range(len(x))]
    cols = {"label": labels} if labels is not None else None
    return store.write_embeddings(path, ids, x, meta, cols)


def _eval_data(seed=1, n=N_ROWS):
    centres = np.random.default_rng(100).normal(size=(3, D)) * 2  # the same classes in every split
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, size=n)
    x = (centres[labels] + 0.4 * rng.normal(size=(n, D)) + 1.0).astype(np.float32)
    return x, [f"c{v}" for v in labels]


def _expected_path(sae, x, how, cknna_batch):
    xt = torch.tensor(x)
    with torch.no_grad():
        z = sae.encode_dense(xt) if how == "dense" else sae.encode(xt, k=how)
        x_hat = sae.decode(z)
    X, Xh, Z = x.astype(np.float64), x_hat.double().numpy(), z.double().numpy()
    fvu = np.var(X - Xh, axis=1) / np.var(X, axis=1)
    cs = (X * Xh).sum(1) / np.linalg.norm(X, axis=1) / np.linalg.norm(Xh, axis=1)
    batches = [
        cknna_dense(X[s : s + cknna_batch], Z[s : s + cknna_batch], 10)
        for s in range(0, len(X) - cknna_batch + 1, cknna_batch)
    ]
    return {
        "l0_zero_fraction": (Z == 0).mean(1).mean(),
        "l0_zero_fraction_std": (Z == 0).mean(1).std(),
        "active": (Z != 0).sum(1).mean(),
        "fvu": fvu.mean(),
        "fvu_std": fvu.std(),
        "cs": cs.mean(),
        "cs_std": cs.std(),
        "fvu_dataset": ((X - Xh) ** 2).sum() / ((X - X.mean(0)) ** 2).sum(),
        "cknna": np.mean(batches),
        "cknna_std": np.std(batches),
        "ndn": int(((Z != 0).sum(0) == 0).sum()),
    }


@pytest.mark.parametrize("cknna_batch", [N_ROWS, 100, 10_000])
def test_metrics_match_whole_set_recomputation(tmp_path, cknna_batch):
    sae_dir = _make_sae(tmp_path)
    x, _ = _eval_data()
    path = _store(tmp_path / "eval.parquet", x)
    sae = load(sae_dir)
    result = evaluate(sae, EvalOptions(embeddings=path, batch_size=70, cknna_batch=cknna_batch), progress=False)
    m = result.metrics
    effective = min(cknna_batch, N_ROWS)
    for block, how in (("dense", "dense"), ("sparse", 16)):
        expected = _expected_path(sae, x, how, effective)
        for key, value in expected.items():
            assert m[block][key] == pytest.approx(value, rel=1e-4, abs=1e-6), (block, key)
    assert m["dense"]["cknna_batches"] == max(1, N_ROWS // cknna_batch)
    w = torch.nn.functional.normalize(sae.W_dec.detach().double(), dim=1).numpy()
    gram = w @ w.T
    assert m["do"] == pytest.approx(((gram**2).sum() - (np.diag(gram) ** 2).sum()) / 64**2, rel=1e-5)
    assert m["ndn"] == m["dense"]["ndn"] and m["ndn_sparse"] == m["sparse"]["ndn"] and m["ndn_train"] == 3
    assert m["n_eval"] == N_ROWS and m["variant"] == "topk" and m["n_latents"] == 64
    assert "lp_kl" not in m and "recall1_orig" not in m  # inputs not given -> keys absent


def test_batched_cknna_equals_full_computation_when_batch_is_whole_set(tmp_path):
    sae = load(_make_sae(tmp_path))
    x, _ = _eval_data()
    path = _store(tmp_path / "eval.parquet", x)
    result = evaluate(sae, EvalOptions(embeddings=path, batch_size=50, cknna_batch=N_ROWS), progress=False)
    with torch.no_grad():
        z = sae.encode_dense(torch.tensor(x))
    assert result.metrics["dense"]["cknna"] == pytest.approx(alignment.cknna(torch.tensor(x), z, 10), abs=1e-12)
    assert result.metrics["dense"]["cknna_std"] == 0.0


def test_cknna_max_batches_uses_the_first_batches(tmp_path):
    sae = load(_make_sae(tmp_path))
    x, _ = _eval_data()
    path = _store(tmp_path / "eval.parquet", x)
    res = evaluate(sae, EvalOptions(embeddings=path, cknna_batch=60, cknna_max_batches=2), progress=False)
    assert res.metrics["dense"]["cknna_batches"] == 2
    assert res.metrics["dense"]["cknna"] == pytest.approx(_expected_path(sae, x[:120], "dense", 60)["cknna"], abs=1e-6)
    with pytest.raises(MsaeError):
        evaluate(sae, EvalOptions(embeddings=path, cknna_max_batches=0), progress=False)


def test_progressive_rows_topk_and_matryoshka(tmp_path):
    x, _ = _eval_data(n=120)
    path = _store(tmp_path / "eval.parquet", x)
    topk = load(_make_sae(tmp_path, "topk", k=16))
    assert progressive_ks(topk) == [16, 32, 64]
    res = evaluate(topk, EvalOptions(embeddings=path, cknna_batch=60), progress=False)
    rows = res.progressive.set_index("k")
    assert list(rows.index) == [16, 32, 64]
    assert rows.loc[64, "fvu"] == res.metrics["dense"]["fvu"]  # k = n is the dense path
    assert rows.loc[16, "l0_zero_fraction"] == res.metrics["sparse"]["l0_zero_fraction"]
    expected32 = _expected_path(topk, x, 32, 60)
    assert rows.loc[32, "fvu"] == pytest.approx(expected32["fvu"], rel=1e-5)
    assert rows.loc[32, "cknna"] == pytest.approx(expected32["cknna"], abs=1e-6)
    assert (rows["active"] <= rows.index + 1e-9).all()
    matryoshka = load(_make_sae(tmp_path, "matryoshka", nesting=[8, 16, 64]))
    res_m = evaluate(matryoshka, EvalOptions(embeddings=path, cknna_batch=60), progress=False)
    assert list(res_m.progressive["k"]) == [16, 32, 64]  # one grid for every variant, not the nesting
    assert res_m.metrics["sparse"]["active"] <= 8
    assert res_m.metrics["sparse"]["fvu"] == pytest.approx(_expected_path(matryoshka, x, 8, 60)["fvu"], rel=1e-5)


def test_path_equal_to_dense_on_most_rows_reuses_it_exactly(tmp_path, monkeypatch):
    """A top-k path that differs from the dense one on a few rows only (the rows with more than k
    positive pre-activations) patches the dense reconstruction and updates the dense k-NN graph
    there: its metrics still equal a whole-set recomputation of the top-k code."""
    x, _ = _eval_data(n=240)
    path = _store(tmp_path / "eval.parquet", x)
    sae = load(_make_sae(tmp_path, "topk", k=16))
    with torch.no_grad():
        sae.b_enc.sub_(0.22)  # 5-6 of each 120 rows have more than 32 positive latents
        positives = (sae.pre_activation(torch.tensor(x)) > 0).sum(1).reshape(2, 120)
    wider = (positives > 32).sum(1)
    assert ((wider > 0) & (wider <= 120 * alignment.UPDATE_MAX_SHARE)).all()
    updates = []

    def spy(graph, feats, changed, entries):
        updates.append(len(changed))
        return update(graph, feats, changed, entries)

    update = alignment.update_knn_graph
    monkeypatch.setattr(alignment, "update_knn_graph", spy)
    res = evaluate(sae, EvalOptions(embeddings=path, batch_size=120, cknna_batch=120), progress=False)
    # k = 16 differs on every row (a new search); k = 32 on the wider rows of each block
    assert sorted(updates) == sorted([120, 120, *wider.tolist()])
    got = res.progressive.set_index("k").loc[32]
    for key, value in _expected_path(sae, x, 32, 120).items():
        assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-7), key


def test_cli_with_probe_and_retention(tmp_path):
    sae_dir = _make_sae(tmp_path)
    x, labels = _eval_data()
    xt, lt = _eval_data(seed=2, n=600)
    eval_path = _store(tmp_path / "eval.parquet", x, labels)
    train_path = _store(tmp_path / "train.parquet", xt, lt)
    text_meta = {**META, "modality": "text"}
    captions = _store(
        tmp_path / "captions.parquet", x[::-1].copy(), ids=[f"r{i}" for i in range(N_ROWS)][::-1], meta=text_meta
    )
    centres = np.stack([x[np.array(labels) == c].mean(0) for c in ("c0", "c1", "c2")])
    classes = _store(tmp_path / "classes.parquet", centres, ["c0", "c1", "c2"], meta=text_meta, ids=["c0", "c1", "c2"])
    out = tmp_path / "out"
    code = main(
        [
            "evaluate",
            "--sae",
            str(sae_dir),
            "--embeddings",
            str(eval_path),
            "--probe-train",
            str(train_path),
            "--probe-batch-size",
            "32",
            "--probe-lr",
            "0.01",
            "--probe-max-epochs",
            "15",
            "--text-embeddings",
            str(captions),
            "--class-embeddings",
            str(classes),
            "--cknna-batch",
            "100",
            "--device",
            "cpu",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["recall1_orig"] == 1.0 and m["recall5_orig"] == 1.0  # captions identical to images, paired by id
    assert m["recall5_retained"] == pytest.approx(m["recall5_recon"])
    assert m["zeroshot_acc_orig"] > 0.95 and m["zeroshot_retained"] == pytest.approx(
        m["zeroshot_acc_recon"] / m["zeroshot_acc_orig"]
    )
    assert (
        m["lp_acc_orig"] > 0.95 and "lp_kl" in m["sparse"]
    )  # values: test_lp_metrics_equal_an_independent_computation
    prog = pd.read_csv(out / "progressive.csv")
    assert {"k", "fvu", "cknna", "lp_kl", "recall1_recon", "zeroshot_acc_recon"} <= set(prog.columns)
    again = tmp_path / "again"
    main(
        [
            "evaluate",
            "--sae",
            str(sae_dir),
            "--embeddings",
            str(eval_path),
            "--probe-train",
            str(train_path),
            "--probe-batch-size",
            "32",
            "--probe-lr",
            "0.01",
            "--probe-max-epochs",
            "15",
            "--cknna-batch",
            "100",
            "--out",
            str(again),
        ]
    )
    m2 = json.loads((again / "metrics.json").read_text())
    assert m2["lp_kl"] == m["lp_kl"] and m2["dense"] == {
        k: v for k, v in m["dense"].items() if k in m2["dense"]
    }  # seeded


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(1, keepdims=True))


def test_lp_metrics_equal_an_independent_computation(tmp_path):
    """LP(KL), LP(agreement) and the probe's accuracies from numpy float64: the probe (trained as
    msae trains it, on the SAE's normalisation) applied to the originals and to each path's
    reconstruction. Feeding the probe the originals twice would give KL 0 and agreement 1."""
    from msae.metrics import linear_probe

    sae = load(_make_sae(tmp_path))
    x, labels = _eval_data()
    xt, lt = _eval_data(seed=2, n=600)
    opts = {"probe_batch_size": 32, "probe_lr": 0.01, "probe_max_epochs": 15}
    options = EvalOptions(
        embeddings=_store(tmp_path / "eval.parquet", x, labels),
        probe_train=_store(tmp_path / "train.parquet", xt, lt),
        cknna_batch=100,
        **opts,
    )
    m = evaluate(sae, options, progress=False).metrics
    features = linear_probe.probe_features(torch.tensor(xt), sae.mean, sae.scale)
    probe = linear_probe.train_probe(features, lt, seed=42, holdout=0.1, lr=0.01, batch_size=32, max_epochs=15)
    with torch.no_grad():
        w, b = probe.linear.weight.double().numpy(), probe.linear.bias.double().numpy()
        mean, scale = sae.mean.double().numpy(), float(sae.scale)

        def log_p(v: np.ndarray) -> np.ndarray:
            f = (v.astype(np.float64) - mean) * scale
            return _log_softmax((f / np.linalg.norm(f, axis=1, keepdims=True)) @ w.T + b)

        p = log_p(x)
        truth = np.array([probe.classes.index(v) for v in labels])
        assert m["lp_acc_orig"] == pytest.approx((p.argmax(1) == truth).mean())
        for block, z in (("dense", sae.encode_dense(torch.tensor(x))), ("sparse", sae.encode(torch.tensor(x)))):
            q = log_p(sae.decode(z).double().numpy())
            kl = (np.exp(p) * (p - q)).sum(1)
            assert m[block]["lp_kl"] == pytest.approx(kl.mean(), rel=1e-4) and kl.mean() > 1e-4
            assert m[block]["lp_kl_std"] == pytest.approx(kl.std(), rel=1e-4)
            assert m[block]["lp_agree"] == pytest.approx((p.argmax(1) == q.argmax(1)).mean())
            assert m[block]["lp_acc_recon"] == pytest.approx((q.argmax(1) == truth).mean())
    assert m["lp_kl"] == m["dense"]["lp_kl"]


def _fails(tmp_path, capsys, *args, match):
    out = tmp_path / "out_fail"
    assert main(["evaluate", *args, "--out", str(out)]) == 2
    assert match in capsys.readouterr().err
    assert not (out / "metrics.json").exists() and not (out / "progressive.csv").exists()


def test_bad_inputs_give_clear_errors_and_no_output(tmp_path, capsys):
    sae_dir = str(_make_sae(tmp_path))
    x, labels = _eval_data(n=50)
    wrong_dim = _store(tmp_path / "wide.parquet", np.zeros((5, D + 1), np.float32))
    _fails(tmp_path, capsys, "--sae", sae_dir, "--embeddings", str(wrong_dim), match="expects d=16")
    unlabelled = _store(tmp_path / "nolabel.parquet", x)
    _fails(
        tmp_path,
        capsys,
        "--sae",
        sae_dir,
        "--embeddings",
        str(unlabelled),
        "--probe-train",
        str(unlabelled),
        match="label",
    )
    empty = _store(tmp_path / "empty.parquet", np.zeros((0, D), np.float32))
    _fails(tmp_path, capsys, "--sae", sae_dir, "--embeddings", str(empty), match="empty")
    other = _store(tmp_path / "other.parquet", x, meta={**META, "model": "other"})
    _fails(tmp_path, capsys, "--sae", sae_dir, "--embeddings", str(other), match="other/x")
    classes = _store(tmp_path / "cls.parquet", x[:2], ["c0", "c1"], meta={**META, "modality": "text"}, ids=["a", "b"])
    labelled = _store(tmp_path / "lab.parquet", x, labels)
    _fails(
        tmp_path,
        capsys,
        "--sae",
        sae_dir,
        "--embeddings",
        str(labelled),
        "--class-embeddings",
        str(classes),
        match="c2",
    )


def test_nan_rows_are_refused_by_id(tmp_path, capsys):
    sae_dir = str(_make_sae(tmp_path))
    x, _ = _eval_data(n=30)
    table = store.embedding_table([f"r{i}" for i in range(30)], x, META)
    emb = x.copy()
    emb[7, 3] = np.nan
    import pyarrow as pa
    import pyarrow.parquet as pq

    bad = table.set_column(1, "embedding", pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), D))
    pq.write_table(bad, tmp_path / "nan.parquet")
    _fails(tmp_path, capsys, "--sae", sae_dir, "--embeddings", str(tmp_path / "nan.parquet"), match="r7")


def test_write_outputs_is_atomic_pair(tmp_path):
    sae = load(_make_sae(tmp_path))
    x, _ = _eval_data(n=40)
    res = evaluate(sae, EvalOptions(embeddings=_store(tmp_path / "e.parquet", x)), progress=False)
    out = write_outputs(res, tmp_path / "o")
    assert json.loads((out / "metrics.json").read_text())["n_eval"] == 40
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "progressive.csv"]


def test_stability_cli_self_and_other_seed(tmp_path):
    a = _make_sae(tmp_path, seed=0)
    b = _make_sae(tmp_path, seed=1)
    assert main(["stability", str(a), str(a), "--out", str(tmp_path / "s.json")]) == 0
    same = json.loads((tmp_path / "s.json").read_text())
    assert same["mean_cosine"] == pytest.approx(1.0) and same["fraction_above"] == 1.0
    assert main(["stability", "--sae-a", str(a), "--sae-b", str(b), "--out", str(tmp_path / "t.json")]) == 0
    other = json.loads((tmp_path / "t.json").read_text())
    assert other["mean_cosine"] < 0.9 and other["matched"] == 64


def test_cross_modal_evaluation_is_asked_for_and_equals_a_recomputation(tmp_path, capsys):
    """An image-trained SAE refuses a caption store unless `--modality text` asks for the paper's
    cross-modal evaluation (Table 2); then its numbers are the caption rows' own, recomputed here."""
    sae_dir = _make_sae(tmp_path)
    config = json.loads((sae_dir / "config.json").read_text())
    config["data"]["modality"] = "image"  # what `msae train` records of its training store
    (sae_dir / "config.json").write_text(json.dumps(config))
    image_x, _ = _eval_data(seed=1)
    text_x = (0.5 * image_x[::-1] + np.random.default_rng(5).normal(size=image_x.shape)).astype(np.float32)
    captions = _store(tmp_path / "captions.parquet", text_x, meta={**META, "modality": "text"})
    args = ["evaluate", "--sae", str(sae_dir), "--embeddings", str(captions), "--cknna-batch", "120"]
    assert main([*args, "--out", str(tmp_path / "refused"), "--device", "cpu"]) == 2
    assert "captions.parquet: expected image embeddings here" in capsys.readouterr().err
    assert not (tmp_path / "refused").exists()
    assert main([*args, "--modality", "text", "--out", str(tmp_path / "text"), "--device", "cpu"]) == 0
    got = json.loads((tmp_path / "text" / "metrics.json").read_text())
    want = _expected_path(load(sae_dir), text_x, "dense", 120)
    for key in ("fvu", "cs", "active", "cknna", "fvu_dataset"):
        assert got["dense"][key] == pytest.approx(want[key], rel=1e-4, abs=1e-6), key
    assert got["n_eval"] == len(text_x)
