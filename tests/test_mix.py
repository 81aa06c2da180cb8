"""Training on both modalities (issue 16): `msae mix` makes one store of a split's images and
captions, an SAE trains on it like on any store, and is evaluated on each modality. Checked
against the inputs row by row, and on planted data where each modality has its own atoms: the
SAE trained on both recovers both dictionaries and fits both modalities, while each one-modality
SAE (the control, trained and measured the same way) fits only its own."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from sae_helpers import atom_recovery, random_dictionary

from msae import embed_files, store
from msae.cli import main
from msae.sae import load

D = 24
META = {"model": "toy", "pretrained": "x", "dataset": "planted", "split": "train"}


def _store(path, x, modality, ids=None, **columns):
    ids = ids if ids is not None else [f"item{i:04d}" for i in range(len(x))]
    return store.write_embeddings(path, ids, x, {**META, "modality": modality}, columns or None, row_group_size=64)


def test_mix_keeps_every_row_tagged_and_interleaved(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    image_x, text_x = rng.normal(size=(300, D)).astype(np.float32), rng.normal(size=(100, D)).astype(np.float32)
    image = _store(tmp_path / "i.parquet", image_x, "image", label=[f"c{i % 3}" for i in range(300)])
    text = _store(tmp_path / "t.parquet", text_x, "text", ids=[f"item{i:04d}" for i in range(100)],
                  text=[f"caption {i}" for i in range(100)])  # fmt: skip
    monkeypatch.setattr(embed_files, "WRITE_ROWS", 80)  # several row groups at this size
    out = tmp_path / "both.parquet"
    assert main(["mix", "--image", str(image), "--text", str(text), "--out", str(out)]) == 0
    mixed = store.read_embeddings(out)
    assert mixed.meta["modality"] == "both" and mixed.meta["count"] == 400
    assert (mixed.meta["dataset"], mixed.meta["split"], mixed.meta["model"]) == ("planted", "train", "toy")
    want = {f"image:item{i:04d}": image_x[i] for i in range(300)} | {f"text:item{i:04d}": text_x[i] for i in range(100)}
    assert sorted(mixed.ids) == sorted(want)
    np.testing.assert_array_equal(mixed.embeddings, np.stack([want[i] for i in mixed.ids]))
    tags = mixed.columns["modality"].tolist()
    assert tags == [i.split(":")[0] for i in mixed.ids]
    assert mixed.columns["text"].notna().tolist() == [t == "text" for t in tags]
    assert mixed.columns["label"].notna().tolist() == [t == "image" for t in tags]
    file = pq.ParquetFile(out)
    assert file.num_row_groups == 5
    for g in range(file.num_row_groups):  # every row group holds both, in the stores' proportion 3:1
        group = file.read_row_group(g, columns=["modality"]).column("modality").to_pylist()
        assert group.count("image") == 3 * group.count("text") > 0


def test_mix_refuses_a_mixed_input_and_writes_nothing(tmp_path, capsys):
    rng = np.random.default_rng(1)
    image = _store(tmp_path / "i.parquet", rng.normal(size=(10, D)).astype(np.float32), "image")
    text = _store(tmp_path / "t.parquet", rng.normal(size=(10, D)).astype(np.float32), "text")
    both = tmp_path / "both.parquet"
    assert main(["mix", "--image", str(image), "--text", str(text), "--out", str(both)]) == 0
    again = tmp_path / "again.parquet"
    assert main(["mix", "--image", str(both), "--text", str(text), "--out", str(again)]) == 2
    assert (
        "both.parquet: expected image embeddings here, but the store holds modality 'both'" in capsys.readouterr().err
    )
    assert not again.exists()


def _modality_data(atoms: np.ndarray, offset: np.ndarray, n: int, seed: int) -> np.ndarray:
    """x = offset + 3 of the modality's atoms with weights in [1, 2]."""
    rng = np.random.default_rng(seed)
    codes = np.zeros((n, len(atoms)))
    chosen = np.argsort(rng.random((n, len(atoms))), axis=1)[:, :3]
    np.put_along_axis(codes, chosen, rng.uniform(1, 2, (n, 3)), axis=1)
    return (codes @ atoms + offset).astype(np.float32)


@pytest.fixture(scope="module")
def modalities(tmp_path_factory):
    """Images and captions made of disjoint planted dictionaries (16 atoms each) around two means
    (the modality gap); an SAE trained on each modality and one on both, with the same options."""
    root = tmp_path_factory.mktemp("modalities")
    rng = np.random.default_rng(7)
    atoms = {"image": random_dictionary(16, D, rng), "text": random_dictionary(16, D, rng)}
    offsets = {m: 2.0 * rng.normal(size=D) / np.sqrt(D) for m in atoms}
    stores = {}
    for split, seed in (("train", 0), ("test", 1)):
        for m in atoms:
            x = _modality_data(atoms[m], offsets[m], 3000 if split == "train" else 600, seed + 10 * len(m))
            stores[split, m] = _store(root / f"{split}_{m}.parquet", x, m)
    stores["train", "both"] = root / "train_both.parquet"
    mixed = ["mix", "--image", stores["train", "image"], "--text", stores["train", "text"], "--out"]
    assert main([*map(str, mixed), str(stores["train", "both"])]) == 0
    runs = {}
    for trained_on in ("image", "text", "both"):
        runs[trained_on] = root / f"sae_{trained_on}"
        options = "--variant topk --k 4 --expansion 4 --epochs 30 --batch-size 128 --seed 0 --device cpu"
        assert main(["train", "--embeddings", str(stores["train", trained_on]), *options.split(),
                     "--out", str(runs[trained_on])]) == 0  # fmt: skip
    return atoms, stores, runs


def _fvu(modalities, trained_on: str, evaluated_on: str, tmp_path) -> float:
    """Dense FVU of `msae evaluate` on the held-out store of one modality."""
    _, stores, runs = modalities
    out = tmp_path / f"{trained_on}_on_{evaluated_on}"
    args = ["evaluate", "--sae", runs[trained_on], "--embeddings", stores["test", evaluated_on], "--out", out]
    assert main([*map(str, args), "--modality", evaluated_on, "--cknna-batch", "200", "--device", "cpu"]) == 0
    return float(json.loads((out / "metrics.json").read_text())["dense"]["fvu"])


def test_the_sae_trained_on_both_recovers_both_dictionaries(modalities):
    atoms, _, runs = modalities
    recovered = {}
    for trained_on, run in runs.items():
        decoder = load(run).W_dec.detach().double().numpy()
        recovered[trained_on] = {m: atom_recovery(decoder, atoms[m])[0] for m in atoms}
    assert recovered["both"]["image"] >= 0.9 and recovered["both"]["text"] >= 0.9, recovered
    # the controls: one modality's SAE finds its own atoms, not the other's
    assert recovered["image"]["image"] >= 0.9 and recovered["image"]["text"] <= 0.3, recovered
    assert recovered["text"]["text"] >= 0.9 and recovered["text"]["image"] <= 0.3, recovered
    config = json.loads((runs["both"] / "config.json").read_text())
    assert config["data"]["modality"] == "both"


def test_the_sae_trained_on_both_fits_both_and_each_control_only_its_own(modalities, tmp_path):
    fvu = {(t, e): _fvu(modalities, t, e, tmp_path) for t in ("image", "text", "both") for e in ("image", "text")}
    for m, other in (("image", "text"), ("text", "image")):
        assert fvu["both", m] < 0.15, fvu
        assert fvu[m, m] < 0.15, fvu
        assert fvu[other, m] > 3 * fvu["both", m], fvu  # the one-modality SAE on the modality it never saw


def test_an_sae_trained_on_both_evaluates_either_modality_by_default(modalities, tmp_path):
    """No --modality: a both-trained SAE reads an image or a caption store (a one-modality SAE
    refuses the other modality unless asked, tests/test_evaluate.py)."""
    _, stores, runs = modalities
    for m in ("image", "text"):
        out = tmp_path / m
        args = ["evaluate", "--sae", runs["both"], "--embeddings", stores["test", m], "--out", out]
        assert main([*map(str, args), "--cknna-batch", "200", "--device", "cpu"]) == 0
        assert json.loads((out / "metrics.json").read_text())["n_eval"] == 600
