"""`msae import official`: checkpoints written by the official MSAE code load into msae and give
the official model's latents and reconstructions (oracle files in tests/data/official_msae/, made
by running the official code; see its README.md). Loading never executes pickled code."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from msae.errors import MsaeError
from msae.interop.official import (
    import_official,
    official_nesting,
    parse_name,
    read_official,
)
from msae.sae import load

DATA = Path(__file__).parent / "data" / "official_msae"
TOPK = "64_16_TopKReLU_4_False_False_0.0_synthetic_train_2048_16"
MATRYOSHKA = "64_16_TopKReLU_4_RW_False_False_0.0_synthetic_train_2048_16"
BATCHTOPK = "64_16_BatchTopKReLU_4_False_False_0.0_synthetic_train_2048_16"
RELU = "64_16_ReLU_003_False_False_0.0_synthetic_train_2048_16"
EXPECTED_CONFIG = {
    TOPK: {"variant": "topk", "k": 4},
    MATRYOSHKA: {"variant": "matryoshka", "nesting": [4, 8, 16, 32, 64], "weighting": "rw", "inner": "topk"},
    BATCHTOPK: {"variant": "batchtopk", "k": 4},
    RELU: {"variant": "relu", "l1": 0.003},
}


def max_abs_diff(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got.double() - want.double()).abs().max())


@pytest.mark.parametrize("stem", list(EXPECTED_CONFIG))
def test_imported_sae_equals_the_official_model(tmp_path: Path, stem: str) -> None:
    run = import_official(DATA / f"{stem}.pth", tmp_path / "run")
    sae = load(run)
    config = json.loads((run / "config.json").read_text())
    assert {k: config[k] for k in EXPECTED_CONFIG[stem]} == EXPECTED_CONFIG[stem]
    assert (config["d"], config["n_latents"], config["scale_mode"]) == (16, 64, "paper")
    ref = load_file(str(DATA / f"{stem}.outputs.safetensors"))
    x = ref.pop("x")
    ours = {"latents": sae.encode(x), "latents_dense": sae.encode_dense(x)}
    ours.update({f"latents_k{k}": sae.encode(x, k=k) for k in (8, 16, 32)})
    ours.update({name.replace("latents", "recon"): sae.decode(z) for name, z in list(ours.items())})
    diffs = {}
    for name, want in ref.items():
        got = ours[name]
        if name.startswith("latents"):
            assert torch.equal(got != 0, want != 0), f"{name}: other latents are active than in the official model"
        diffs[name] = max_abs_diff(got, want)
        assert diffs[name] <= 1e-6 * float(want.abs().max()), f"{name}: max-abs diff {diffs[name]:.3g}"
    assert set(ref) <= set(ours) and ref, "the oracle file holds the outputs this test compares"


def test_batchtopk_threshold_zero_is_the_official_dense_path(tmp_path: Path) -> None:
    """The official BatchTopK has no inference threshold; imported with 0 its own activation is the
    dense ReLU path the official evaluation reports, and a threshold makes it sparser."""
    ref = load_file(str(DATA / f"{BATCHTOPK}.outputs.safetensors"))
    sae = load(import_official(DATA / f"{BATCHTOPK}.pth", tmp_path / "zero"))
    assert torch.equal(sae.encode(ref["x"]), sae.encode_dense(ref["x"]))
    dense = ref["latents_dense"]
    cut = float(dense[dense > 0].median())
    z = load(import_official(DATA / f"{BATCHTOPK}.pth", tmp_path / "cut", threshold=cut)).encode(ref["x"])
    clear = (dense - cut).abs() > 1e-6  # away from the cut, where float rounding cannot decide
    assert max_abs_diff(z[clear], torch.where(dense > cut, dense, 0.0)[clear]) <= 1e-6 * float(dense.max())
    assert 0 < int((z != 0).sum()) < int((dense != 0).sum())
    assert json.loads((tmp_path / "cut" / "config.json").read_text())["source"]["threshold"] == cut
    with pytest.raises(MsaeError, match="not a BatchTopK checkpoint"):
        import_official(DATA / f"{TOPK}.pth", tmp_path / "topk", threshold=cut)
    with pytest.raises(MsaeError, match="must be a finite number >= 0"):
        import_official(DATA / f"{BATCHTOPK}.pth", tmp_path / "negative", threshold=-1.0)


def test_import_records_source_and_backbone(tmp_path: Path) -> None:
    run = import_official(DATA / f"{TOPK}.pth", tmp_path / "run", model="ViT-L-14", pretrained="openai")
    config = json.loads((run / "config.json").read_text())
    source = config["source"]
    assert source["format"] == "official-msae" and source["file_name"] == f"{TOPK}.pth"
    assert source["target_norm"] == pytest.approx(4.0)  # sqrt(d), stored by train.py as numpy float64
    import hashlib

    assert source["sha256"] == hashlib.sha256((DATA / f"{TOPK}.pth").read_bytes()).hexdigest()
    assert config["data"]["model"] == "ViT-L-14" and config["data"]["dataset"] == "synthetic_train_2048_16"
    with pytest.raises(MsaeError, match="give both or neither"):
        import_official(DATA / f"{TOPK}.pth", tmp_path / "half", model="ViT-L-14")


def test_checkpoint_written_under_numpy_1_loads(tmp_path: Path) -> None:
    """The official requirements pin numpy 1.26, whose pickles name numpy.core.multiarray.scalar;
    the allow-list covers that spelling too (the file is rewritten to it here)."""
    source = DATA / f"{TOPK}.pth"
    target = tmp_path / source.name
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith("data.pkl"):
                assert b"numpy._core.multiarray\nscalar" in data
                data = data.replace(b"numpy._core.multiarray\nscalar", b"numpy.core.multiarray\nscalar")
            zout.writestr(item, data)
    parts, _, details = read_official(target)
    reference, _, _ = read_official(source)
    assert torch.equal(parts.W_enc, reference.W_enc) and details["target_norm"] == pytest.approx(4.0)


class _Payload:
    """Pickles as a call to exec: what a malicious checkpoint would carry."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('executed')",))


def test_pickled_code_is_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "executed.txt"
    good = torch.load(DATA / f"{TOPK}.pth", weights_only=False)  # trusted test data
    evil = tmp_path / f"{TOPK}.pth"
    torch.save({**good, "scaling_factor": _Payload(marker)}, evil)
    with pytest.raises(MsaeError, match=str(evil).replace(".", r"\.")) as info:
        import_official(evil, tmp_path / "run")
    assert "weights-only" in str(info.value) and "GLOBAL exec" in str(info.value)
    assert "add_safe_globals" not in str(info.value)  # no advice to allow what was refused
    assert not marker.exists() and not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "6144_768_TopKReLU_64_RW_False_False_0.0_cc3m_ViT-L~14_train_image_2905936_768.pth",
            {"variant": "matryoshka", "nesting": [64, 128, 256, 512, 1024, 2048, 4096, 6144], "weighting": "rw"},
        ),
        (
            "4096_512_TopKReLU_64_UW_False_False_0.0_cc3m.pth",
            {"variant": "matryoshka", "nesting": [64, 128, 256, 512, 1024, 2048, 4096], "weighting": "uw"},
        ),
        ("12288_768_TopKReLU_64_False_False_0.0_data.pth", {"variant": "topk", "k": 64}),
        ("6144_768_BatchTopKReLU_32_False_False_0.0_data.pt", {"variant": "batchtopk", "k": 32}),
        ("24576_768_ReLU_03_False_False_0.0_data.pth", {"variant": "relu", "l1": 0.03}),
        ("24576_768_ReLU_003_False_False_0.0_data.pth", {"variant": "relu", "l1": 0.003}),
    ],
)
def test_file_name_convention(name: str, expected: dict) -> None:
    config = parse_name(name).config
    assert {k: config[k] for k in expected} == expected


def test_nesting_follows_train_py() -> None:
    """train.py: start, doubling while <= n, then n if missing (the paper's table for d = 768)."""
    assert official_nesting(64, 12288) == [64, 128, 256, 512, 1024, 2048, 4096, 8192, 12288]
    assert official_nesting(64, 4096) == [64, 128, 256, 512, 1024, 2048, 4096]
    assert official_nesting(4, 64) == [4, 8, 16, 32, 64]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("64_16_TopK_4_False_False_0.0_d.pth", "TopK has no msae equivalent"),
        ("64_16_TopKabs_4_False_False_0.0_d.pth", "TopKabs has no msae equivalent"),
        ("64_16_TopKReLU_4_True_False_0.0_d.pth", "tied weights"),
        ("64_16_TopKReLU_4_False_True_0.0_d.pth", "per-sample input standardisation"),
        ("64_16_TopKReLU_4_False_False_30.0_d.pth", "soft cap 30.0"),
        ("64_16_TopKReLU_99_False_False_0.0_d.pth", "k=99 must lie in 1..n=64"),
        ("model.pth", "cannot read the architecture from the file name"),
        ("64_16_TopKReLU_4_maybe_False_0.0_d.pth", "tied/normalize flags"),
    ],
)
def test_architectures_msae_cannot_hold_are_refused(tmp_path: Path, name: str, message: str) -> None:
    path = tmp_path / name
    shutil.copy(DATA / f"{TOPK}.pth", path)
    with pytest.raises(MsaeError, match=message):
        read_official(path)


def test_file_name_disagreeing_with_the_tensors_is_refused(tmp_path: Path) -> None:
    path = tmp_path / TOPK.replace("64_16_", "128_16_", 1)
    shutil.copy(DATA / f"{TOPK}.pth", path.with_suffix(".pth"))
    with pytest.raises(MsaeError, match=r"encoder has shape \(16, 64\), but the file name says d=16, n=128"):
        read_official(path.with_suffix(".pth"))


def test_oracle_inputs_are_clip_like() -> None:
    """The oracle inputs carry a large common offset, so equal outputs also prove the mean and
    scale map: without them (mean 0, scale 1) the official latents would differ."""
    ref = load_file(str(DATA / f"{TOPK}.outputs.safetensors"))
    parts, _, _ = read_official(DATA / f"{TOPK}.pth")
    x = ref["x"].double()
    assert float(x.mean(0).norm()) > float((x - x.mean(0)).norm(dim=1).mean())
    a_raw = (x - parts.b_pre.double()) @ parts.W_enc.double() + parts.b_enc.double()
    z_raw = torch.zeros_like(a_raw).scatter_(1, a_raw.topk(4, dim=1).indices, 1.0) * a_raw.clamp_min(0)
    assert not np.array_equal((z_raw != 0).numpy(), (ref["latents"] != 0).numpy())
