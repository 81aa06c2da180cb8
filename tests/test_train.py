"""`msae train` end to end: outputs, determinism, exact resume, streaming, bad input."""

from __future__ import annotations

import csv
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from sae_helpers import planted, write_store
from safetensors.torch import load_file

from msae.cli import main
from msae.config.train import scaled_lr, train_config
from msae.errors import MsaeError
from msae.sae import checkpoint, load
from msae.train import lr_factor, train_sae


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    x, _ = planted(600, d=12, n_atoms=24, active=3, seed=5)
    return write_store(tmp_path_factory.mktemp("data") / "train.parquet", x, row_group_size=128)


def _train(data, out, variant="topk", epochs=3, **kw):
    if variant in ("topk", "batchtopk"):
        kw.setdefault("k", 3)
    config = train_config(
        variant=variant,
        embeddings=data,
        out=out,
        expansion=4.0,
        epochs=epochs,
        batch_size=64,
        log_every=4,
        dead_window=5,
        device="cpu",
        **kw,
    )
    return train_sae(config, progress=False)


def _tensors(run_dir):
    return load_file(str(run_dir / "model.safetensors"))


def test_cli_writes_the_checkpoint_directory_contract(data, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(
        [
            "train",
            "--embeddings",
            str(data),
            "--variant",
            "matryoshka",
            "--expansion",
            "4",
            "--nesting",
            "2,6,48",
            "--weighting",
            "uw",
            "--epochs",
            "2",
            "--batch-size",
            "100",
            "--log-every",
            "3",
            "--device",
            "cpu",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors", "train_log.csv"]
    config = json.loads((out / "config.json").read_text())
    assert config["variant"] == "matryoshka" and config["nesting"] == [2, 6, 48] and config["weighting"] == "uw"
    assert config["d"] == 12 and config["n_latents"] == 48 and config["schema_version"] == 1
    assert config["data"]["path"] == str(data) and len(config["data"]["sha256"]) == 64
    assert config["data"]["model"] == "toy" and config["data"]["modality"] == "image"
    assert isinstance(config["final_dead_latents"], int) and config["training"]["lr_rule"] == "scaled"
    assert config["training"]["lr"] == scaled_lr(48, 2 * 6) == 0.02  # the default rule at n = 48, 12 steps
    with open(out / "train_log.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["step", "epoch", "loss", "fvu", "active", "dead_fraction", "lr"]
    assert [int(r["step"]) for r in rows] == [3, 6, 9, 12]  # every 3 steps (6 steps per epoch)
    assert all(np.isfinite(float(r[c])) for r in rows for c in ("loss", "fvu", "active", "dead_fraction", "lr"))
    sae = load(out)
    x = torch.randn(4, 12)
    assert sae.encode(x).shape == (4, 48) and sae.decode(sae.encode(x)).shape == (4, 12)
    assert "msae train: matryoshka SAE, 12 steps" in capsys.readouterr().out


def test_training_reduces_the_loss_and_is_deterministic_for_a_seed(data, tmp_path):
    first = _train(data, tmp_path / "a", epochs=4, lr=5e-3)
    again = _train(data, tmp_path / "b", epochs=4, lr=5e-3)
    other = _train(data, tmp_path / "c", epochs=4, lr=5e-3, seed=7)
    a, b, c = _tensors(tmp_path / "a"), _tensors(tmp_path / "b"), _tensors(tmp_path / "c")
    assert all(torch.equal(a[name], b[name]) for name in a)
    assert not torch.equal(a["W_dec"], c["W_dec"])
    with open(tmp_path / "a" / "train_log.csv") as handle:
        losses = [float(r["loss"]) for r in csv.DictReader(handle)]
    assert losses[-1] < 0.8 * losses[0]
    assert first.steps == again.steps == 4 * 10
    assert other.final["active"] == 3.0  # TopK k=3: exactly 3 active latents in every sample


@pytest.mark.parametrize("variant", ["topk", "batchtopk", "jumprelu"])
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(data, tmp_path, monkeypatch, variant):
    _train(data, tmp_path / "full", variant=variant, epochs=3, auxk_alpha=0.1 if variant == "topk" else 0.0)
    saves = []
    real_save = checkpoint.save_training_state

    def save_then_crash(path, state):
        real_save(path, state)
        saves.append(state["epoch"])
        if len(saves) == 1:
            raise KeyboardInterrupt  # killed right after the first epoch's checkpoint

    monkeypatch.setattr(checkpoint, "save_training_state", save_then_crash)
    part = tmp_path / "part"
    with pytest.raises(KeyboardInterrupt):
        _train(data, part, variant=variant, epochs=3, auxk_alpha=0.1 if variant == "topk" else 0.0)
    assert not (part / "config.json").exists() and (part / "checkpoint" / "state.pt").exists()
    _train(data, part, variant=variant, epochs=3, auxk_alpha=0.1 if variant == "topk" else 0.0, resume=True)
    full, resumed = _tensors(tmp_path / "full"), _tensors(part)
    assert full.keys() == resumed.keys()
    for name in full:
        assert torch.equal(full[name], resumed[name]), name
    assert (tmp_path / "full" / "train_log.csv").read_text() == (part / "train_log.csv").read_text()
    assert not (part / "checkpoint").exists()  # removed once the run is complete


def test_resume_refuses_an_incompatible_checkpoint(data, tmp_path):
    _train(data, tmp_path, epochs=1, keep_checkpoint=True)
    with pytest.raises(MsaeError, match="k: checkpoint has 3, this run asks 4"):
        _train(data, tmp_path, epochs=1, k=4, keep_checkpoint=True, resume=True)
    with pytest.raises(MsaeError, match="variant"):
        _train(data, tmp_path, variant="relu", epochs=1, keep_checkpoint=True, resume=True)
    other = write_store(tmp_path / "other.parquet", planted(600, d=12, n_atoms=24, seed=9)[0])
    with pytest.raises(MsaeError, match="training data differs"):
        _train(other, tmp_path, epochs=1, keep_checkpoint=True, resume=True)
    with pytest.raises(MsaeError, match="no training checkpoint"):
        _train(data, tmp_path / "fresh", epochs=1, resume=True)


def test_streamed_training_matches_the_contract_and_is_deterministic(data, tmp_path):
    a = _train(data, tmp_path / "a", data_placement="stream")
    _train(data, tmp_path / "b", data_placement="stream")
    assert a.steps == 3 * 10
    ta, tb = _tensors(tmp_path / "a"), _tensors(tmp_path / "b")
    assert all(torch.equal(ta[n], tb[n]) for n in ta)
    device = _tensors(_train(data, tmp_path / "d").out)
    torch.testing.assert_close(ta["mean"], device["mean"])
    torch.testing.assert_close(ta["scale"], device["scale"])
    assert json.loads((tmp_path / "a" / "config.json").read_text())["data"]["placement"] == "stream"


def _schedule(**kw):
    return train_config(variant="topk", embeddings="x.parquet", out="run", expansion=1.0, **kw)


def test_lr_schedule_matches_the_reference_per_epoch_and_decays_per_step():
    per_epoch = _schedule(epochs=30, lr_schedule="epoch")
    factors = [lr_factor(0, e, 1, per_epoch) for e in range(30)]
    assert factors[:25] == [1.0] * 25
    np.testing.assert_allclose(factors[25:], [5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6])
    twenty = [lr_factor(0, e, 1, _schedule(epochs=20, lr_schedule="epoch")) for e in range(20)]
    np.testing.assert_allclose(twenty[16:], [1.0, 0.75, 0.5, 0.25])
    per_step = _schedule(epochs=10)
    steps = [lr_factor(t, t // 10, 10, per_step) for t in range(100)]
    assert steps[:80] == [1.0] * 80 and steps[-1] == pytest.approx(1 / 20)
    assert all(b < a for a, b in zip(steps[80:], steps[81:]))
    warm = _schedule(epochs=10, warmup_steps=4)
    assert [lr_factor(t, 0, 10, warm) for t in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]


def test_default_learning_rate_rule():
    """scaled: Gao et al.'s 2e-4*sqrt(2^14/n) from 10,000 steps on, times sqrt(10,000/steps)
    below, capped at 0.02; paper: the paper's per-variant value; an explicit --lr always wins."""
    assert scaled_lr(2**14, 10_000) == pytest.approx(2e-4) and scaled_lr(2**14, 50_000) == pytest.approx(2e-4)
    assert scaled_lr(4096, 10_000) == pytest.approx(4e-4) and scaled_lr(4096, 2500) == pytest.approx(8e-4)
    assert scaled_lr(256, 10) == 0.02
    assert scaled_lr(24576, 22_000) == pytest.approx(2e-4 / 1.5**0.5)  # the paper's scale: ~1.6e-4
    config = _schedule(epochs=10)
    assert config.learning_rate(4096, 2500) == pytest.approx(8e-4)
    assert _schedule(lr_rule="paper").learning_rate(4096, 1250) == 5e-4  # TopK's in the paper
    assert _schedule(lr=3e-3, lr_rule="paper").learning_rate(4096, 1250) == 3e-3


def _with_embeddings(source, target, x):
    """Copy a store with its embedding column replaced (bypassing the writer's NaN check)."""
    table = pq.read_table(source).slice(0, len(x))
    column = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1])
    pq.write_table(table.set_column(1, "embedding", column), target)
    return target


def test_bad_input_is_refused_naming_the_problem_and_nothing_is_written(tmp_path, capsys):
    x = planted(50, d=8, n_atoms=8)[0]
    good = write_store(tmp_path / "good.parquet", x)
    x_nan = x.copy()
    x_nan[[3, 17], 2] = [np.nan, np.inf]
    nan = _with_embeddings(good, tmp_path / "nan.parquet", x_nan)
    empty = _with_embeddings(good, tmp_path / "empty.parquet", x[:0])
    out = tmp_path / "run"

    def cli(embeddings, *extra):
        base = ["train", "--variant", "topk", "--expansion", "2", "--epochs", "1", "--device", "cpu"]
        code = main([*base, *extra, "--embeddings", str(embeddings), "--out", str(out)])
        return code, capsys.readouterr().err

    code, err = cli(nan, "--k", "2")
    assert code == 2 and "row-3" in err and "row-17" in err and "NaN or inf" in err
    code, err = cli(good, "--k", "99")
    assert code == 2 and "--k: 99" in err
    code, err = cli(good, "--variant", "matryoshka", "--nesting", "4,2")
    assert code == 2 and "increase strictly" in err
    code, err = cli(good, "--variant", "matryoshka", "--k", "4")
    assert code == 2 and "--k: unknown option for variant matryoshka" in err
    code, err = cli(empty, "--k", "2")
    assert code == 2 and "empty" in err
    code, err = cli(tmp_path / "missing.parquet", "--k", "2")
    assert code == 2 and "not found" in err
    assert not out.exists()
