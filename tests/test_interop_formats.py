"""SAELens and sparsify export/import (msae.interop.saelens, msae.interop.sparsify).

Checked three ways: against an independent float64 numpy implementation of each format's forward
pass read straight from the exported files; by round trips (msae -> format -> msae restores the
run, bit-exact with float64 files; a foreign file -> msae -> format gives the same tensors); and,
when the libraries are installed, by loading the export with sae-lens and sparsify themselves.
Inputs are CLIP-like: a large common offset and an anisotropic spread, so a missing or wrong
preprocessing fold cannot go unnoticed (the negative control checks exactly that).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file as load_numpy
from safetensors.torch import save_file

from msae.errors import MsaeError
from msae.interop import Parts, read_run, write_run
from msae.interop.saelens import export_saelens, import_saelens
from msae.interop.sparsify import export_sparsify, import_sparsify
from msae.sae import load

VARIANTS = ("relu", "topk", "batchtopk", "matryoshka", "jumprelu")
TOPK_LIKE = ("relu", "topk", "matryoshka")  # what sparsify can hold
D, N = 12, 48


def make_run(directory: Path, variant: str, seed: int = 0, d: int = D, n: int = N) -> Path:
    """A random msae run directory of `variant` with a non-trivial mean and scale. The one place the
    tests build an SAE (through msae.interop's adapter to msae.sae)."""
    g = torch.Generator().manual_seed(seed)
    config: dict[str, Any] = {"variant": variant, "d": d, "n_latents": n}
    threshold = None
    if variant in ("topk", "batchtopk"):
        config["k"] = 5
    if variant == "matryoshka":
        config.update(nesting=[4, 8, 16, n], weighting="rw", inner="topk")
    if variant == "batchtopk":
        threshold = torch.tensor(0.2)
    if variant == "jumprelu":
        threshold = torch.rand(n, generator=g) * 0.4
    W_dec = torch.randn(n, d, generator=g)
    W_dec /= W_dec.norm(dim=1, keepdim=True)
    # relu: a positive encoder bias makes some inputs switch on every latent, so that a top-k with
    # k < n (a wrong sparsify export of ReLU) shows
    b_enc = 0.1 * torch.randn(n, generator=g) + (4.0 if variant == "relu" else 0.0)
    parts = Parts(
        config=config,
        W_enc=W_dec.T * (0.5 + torch.rand(1, n, generator=g)),
        b_enc=b_enc,
        W_dec=W_dec,
        b_pre=0.2 * torch.randn(d, generator=g),
        mean=3.0 * torch.randn(d, generator=g),
        scale=0.37,
        threshold=threshold,
    )
    data = {
        "path": "train.parquet",
        "sha256": "ab" * 32,
        "model": "msae-world",
        "pretrained": "builtin",
        "modality": "image",
        "dataset": "shapes",
        "split": "train",
    }
    info = {"data": data, "training": {"epochs": 3, "seed": seed}}
    return write_run(parts, directory, "test", info)


def clip_like(rows: int, seed: int = 1, d: int = D) -> torch.Tensor:
    """Raw CLIP-like embeddings: a large common offset plus an anisotropic spread."""
    rng = np.random.default_rng(seed)
    offset = 3.0 * rng.standard_normal(d)
    spread = rng.standard_normal((rows, d)) * np.geomspace(3.0, 0.05, d)
    return torch.from_numpy(offset + spread @ np.linalg.qr(rng.standard_normal((d, d)))[0]).float()


def msae_outputs(run: Path, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    sae = load(run)
    z = sae.encode(x)
    return z.double().numpy(), sae.decode(z).double().numpy()


# --------------------------------------------------------------------- independent forward passes
def saelens_numpy(directory: Path, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SAELens's inference equations in float64, from the files alone."""
    cfg = json.loads((directory / "cfg.json").read_text())
    w = {k: v.astype(np.float64) for k, v in load_numpy(str(directory / "sae_weights.safetensors")).items()}
    sae_in = x - w["b_dec"] if cfg["apply_b_dec_to_input"] else x
    a = sae_in @ w["W_enc"] + w["b_enc"]
    W_dec = w["W_dec"]
    if cfg["architecture"] == "topk":
        if cfg.get("rescale_acts_by_decoder_norm"):
            a = a * np.linalg.norm(W_dec, axis=1)
        z = np.zeros_like(a)
        top = np.argsort(-a, axis=1)[:, : cfg["k"]]
        np.put_along_axis(z, top, np.maximum(np.take_along_axis(a, top, axis=1), 0), axis=1)
        acts = z / np.linalg.norm(W_dec, axis=1) if cfg.get("rescale_acts_by_decoder_norm") else z
        return z, acts @ W_dec + w["b_dec"]
    z = np.maximum(a, 0)
    if cfg["architecture"] == "jumprelu":
        z = z * (a > w["threshold"])
    return z, z @ W_dec + w["b_dec"]


def sparsify_numpy(directory: Path, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sparsify's encode/decode in float64: top-k of ReLU((x - b_dec) E^T + e), z W_dec + b_dec."""
    cfg = json.loads((directory / "cfg.json").read_text())
    w = {k: v.astype(np.float64) for k, v in load_numpy(str(directory / "sae.safetensors")).items()}
    pre = np.maximum((x - w["b_dec"]) @ w["encoder.weight"].T + w["encoder.bias"], 0)
    z = np.zeros_like(pre)
    top = np.argsort(-pre, axis=1)[:, : cfg["k"]]
    np.put_along_axis(z, top, np.take_along_axis(pre, top, axis=1), axis=1)
    return z, z @ w["W_dec"] + w["b_dec"]


EXPORTS = {
    "saelens": (export_saelens, import_saelens, saelens_numpy, VARIANTS),
    "sparsify": (export_sparsify, import_sparsify, sparsify_numpy, TOPK_LIKE),
}
CASES = [(fmt, v) for fmt, (_, _, _, variants) in EXPORTS.items() for v in variants]


def assert_same_function(got: tuple[np.ndarray, np.ndarray], want: tuple[np.ndarray, np.ndarray]) -> None:
    """Same latents (same active set) and reconstruction, to float32 rounding of the inputs' size."""
    z, x_hat = got
    z_ref, x_ref = want
    assert np.array_equal(z != 0, z_ref != 0)
    np.testing.assert_allclose(z, z_ref, rtol=0, atol=1e-5 * np.abs(z_ref).max())
    np.testing.assert_allclose(x_hat, x_ref, rtol=0, atol=1e-5 * np.abs(x_ref).max())


@pytest.mark.parametrize(("fmt", "variant"), CASES)
def test_export_maps_raw_embeddings_like_msae(tmp_path: Path, fmt: str, variant: str) -> None:
    export, _, forward, _ = EXPORTS[fmt]
    run = make_run(tmp_path / "run", variant)
    x = clip_like(64)
    out = export(run, tmp_path / fmt)
    assert_same_function(forward(out, x.double().numpy()), msae_outputs(run, x))


def test_negative_control_unfolded_export_differs(tmp_path: Path) -> None:
    """The test data are sensitive to the fold: the same weights without mean and scale moved in
    (b_dec = b_pre, W unchanged) give other latents and reconstructions on CLIP-like inputs."""
    run = make_run(tmp_path / "run", "topk")
    parts, _ = read_run(run)
    out = export_saelens(run, tmp_path / "sl")
    raw = {"W_enc": parts.W_enc, "b_enc": parts.b_enc, "W_dec": parts.W_dec, "b_dec": parts.b_pre}
    save_file({k: v.contiguous() for k, v in raw.items()}, str(out / "sae_weights.safetensors"))
    z, x_hat = saelens_numpy(out, clip_like(64).double().numpy())
    z_ref, x_ref = msae_outputs(run, clip_like(64))
    assert not np.array_equal(z != 0, z_ref != 0)
    assert np.abs(x_hat - x_ref).max() > 0.1 * np.abs(x_ref).max()


@pytest.mark.parametrize(("fmt", "variant"), CASES)
def test_round_trip_restores_the_run(tmp_path: Path, fmt: str, variant: str) -> None:
    export, import_, _, _ = EXPORTS[fmt]
    run = make_run(tmp_path / "run", variant)
    before, config_before = read_run(run)
    back = import_(export(run, tmp_path / fmt), tmp_path / "back")
    after, config_after = read_run(back)
    assert after.config == before.config
    assert after.scale == before.scale
    eps = torch.finfo(torch.float32).eps
    for name in ("W_enc", "b_enc", "W_dec", "b_pre", "mean"):  # float32 files: within float32 rounding
        want, got = getattr(before, name), getattr(after, name)
        assert (got - want).abs().max() <= 4 * eps * (want.abs().max() + before.mean.abs().max() * before.scale)
    if before.threshold is not None:
        assert torch.equal(after.threshold, before.threshold)
    assert config_after["data"] == config_before["data"] and config_after["training"] == config_before["training"]
    assert config_after["source"]["format"] == fmt and config_after["source"]["msae_metadata"] is True
    x = clip_like(64)
    assert_same_function(msae_outputs(back, x), msae_outputs(run, x))


@pytest.mark.parametrize(
    ("fmt", "variant"), [("saelens", "batchtopk"), ("saelens", "matryoshka"), ("sparsify", "relu")]
)
def test_float64_round_trip_is_bit_exact(tmp_path: Path, fmt: str, variant: str) -> None:
    export, import_, _, _ = EXPORTS[fmt]
    run = make_run(tmp_path / "run", variant)
    before, _ = read_run(run)
    after, _ = read_run(import_(export(run, tmp_path / fmt, dtype="float64"), tmp_path / "back"))
    for name in ("W_enc", "b_enc", "W_dec", "b_pre", "mean"):
        assert torch.equal(getattr(after, name), getattr(before, name)), name


# --------------------------------------------------------------------- foreign files
def write_saelens(directory: Path, architecture: str, seed: int = 3, **cfg: Any) -> Path:
    """A SAELens v6 directory as SAELens writes it, without msae metadata."""
    g = torch.Generator().manual_seed(seed)
    tensors = {
        "W_enc": torch.randn(D, N, generator=g),
        "b_enc": 0.1 * torch.randn(N, generator=g),
        "W_dec": torch.randn(N, D, generator=g),
        "b_dec": torch.randn(D, generator=g),
    }
    if architecture == "jumprelu":
        tensors["threshold"] = torch.rand(N, generator=g) - 0.2  # some below zero: SAELens's ReLU then decides
    directory.mkdir(parents=True)
    save_file(tensors, str(directory / "sae_weights.safetensors"))
    config = {
        "d_in": D,
        "d_sae": N,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "architecture": architecture,
        "metadata": {"sae_lens_version": "6.5.0"},
        **cfg,
    }
    (directory / "cfg.json").write_text(json.dumps(config))
    return directory


@pytest.mark.parametrize(
    ("architecture", "cfg", "variant"),
    [
        ("standard", {}, "relu"),
        ("topk", {"k": 6, "rescale_acts_by_decoder_norm": False}, "topk"),
        ("jumprelu", {}, "jumprelu"),
        ("topk", {"k": 6, "rescale_acts_by_decoder_norm": True}, "topk"),
        ("standard", {"apply_b_dec_to_input": False}, "relu"),
    ],
)
def test_foreign_saelens_sae_imports_as_the_function_it_computes(
    tmp_path: Path, architecture: str, cfg: dict, variant: str
) -> None:
    source = write_saelens(tmp_path / "foreign", architecture, **cfg)
    run = import_saelens(source, tmp_path / "run", model="ViT-B-16", pretrained="openai")
    config = json.loads((run / "config.json").read_text())
    assert config["variant"] == variant and config["source"]["msae_metadata"] is False
    assert config["data"]["model"] == "ViT-B-16" and config["data"]["pretrained"] == "openai"
    x = clip_like(64)
    assert_same_function(msae_outputs(run, x), saelens_numpy(source, x.double().numpy()))


@pytest.mark.parametrize("architecture", ["standard", "topk", "jumprelu"])
def test_foreign_saelens_round_trip_keeps_the_tensors(tmp_path: Path, architecture: str) -> None:
    source = write_saelens(tmp_path / "foreign", architecture, **({"k": 6} if architecture == "topk" else {}))
    again = export_saelens(import_saelens(source, tmp_path / "run"), tmp_path / "again")
    want, got = load_numpy(str(source / "sae_weights.safetensors")), load_numpy(str(again / "sae_weights.safetensors"))
    assert sorted(got) == sorted(want)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])


def test_foreign_sparsify_round_trip_keeps_the_tensors(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", "topk")
    first = export_sparsify(run, tmp_path / "first")
    cfg = json.loads((first / "cfg.json").read_text())
    del cfg["msae"]  # a sparsify SAE that msae did not write
    (first / "cfg.json").write_text(json.dumps(cfg))
    imported = import_sparsify(first, tmp_path / "imported")
    assert json.loads((imported / "config.json").read_text())["variant"] == "topk"
    again = export_sparsify(imported, tmp_path / "again")
    want, got = load_numpy(str(first / "sae.safetensors")), load_numpy(str(again / "sae.safetensors"))
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])


def test_metadata_that_no_longer_describes_the_file_is_ignored(tmp_path: Path) -> None:
    """A Matryoshka export whose k another tool changed, and a BatchTopK export whose thresholds
    were retrained per latent, import as what the files now compute (topk, jumprelu)."""
    out = export_saelens(make_run(tmp_path / "m", "matryoshka"), tmp_path / "m_sl")
    cfg = json.loads((out / "cfg.json").read_text())
    cfg["k"] = 7
    (out / "cfg.json").write_text(json.dumps(cfg))
    assert json.loads((import_saelens(out, tmp_path / "m_back") / "config.json").read_text())["variant"] == "topk"

    out = export_saelens(make_run(tmp_path / "b", "batchtopk"), tmp_path / "b_sl")
    weights = load_numpy(str(out / "sae_weights.safetensors"))
    weights["threshold"] = weights["threshold"] + np.linspace(0, 0.1, N, dtype=np.float32)
    from safetensors.numpy import save_file as save_numpy

    save_numpy(weights, str(out / "sae_weights.safetensors"))
    back = import_saelens(out, tmp_path / "b_back")
    assert json.loads((back / "config.json").read_text())["variant"] == "jumprelu"
    x = clip_like(64)
    assert_same_function(msae_outputs(back, x), saelens_numpy(out, x.double().numpy()))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"architecture": "gated"}, "architecture 'gated'"),
        ({"normalize_activations": "layer_norm"}, "normalize_activations 'layer_norm'"),
        ({"d_sae": 7}, "W_enc has shape"),
    ],
)
def test_saelens_files_msae_cannot_hold_are_refused(tmp_path: Path, change: dict, message: str) -> None:
    source = write_saelens(tmp_path / "foreign", "standard")
    cfg = json.loads((source / "cfg.json").read_text())
    (source / "cfg.json").write_text(json.dumps({**cfg, **change}))
    with pytest.raises(MsaeError, match=message):
        import_saelens(source, tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("variant", ["batchtopk", "jumprelu"])
def test_sparsify_export_refuses_threshold_variants(tmp_path: Path, variant: str) -> None:
    with pytest.raises(MsaeError, match="use --format saelens"):
        export_sparsify(make_run(tmp_path / "run", variant), tmp_path / "out")


def test_export_of_an_unfinished_run_is_refused(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", "topk")
    (run / "config.json").unlink()
    with pytest.raises(MsaeError, match="config.json"):
        export_saelens(run, tmp_path / "out")


# --------------------------------------------------------------------- the libraries themselves
@pytest.mark.parametrize("variant", VARIANTS)
def test_sae_lens_loads_the_export(tmp_path: Path, variant: str) -> None:
    sae_lens = pytest.importorskip("sae_lens", reason="sae-lens is not installed (pip install sae-lens)")
    run = make_run(tmp_path / "run", variant)
    sae = sae_lens.SAE.load_from_disk(str(export_saelens(run, tmp_path / "sl")))
    x = clip_like(64)
    with torch.no_grad():
        z = sae.encode(x)
        got = (z.double().numpy(), sae.decode(z).double().numpy())
    assert_same_function(got, msae_outputs(run, x))


@pytest.mark.parametrize("variant", TOPK_LIKE)
def test_sparsify_loads_the_export(tmp_path: Path, variant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPARSIFY_DISABLE_TRITON", "1")  # its Triton decoder needs a GPU; read at import
    sparsify = pytest.importorskip("sparsify", reason="sparsify is not installed (pip install eai-sparsify)")
    run = make_run(tmp_path / "run", variant)
    coder = sparsify.SparseCoder.load_from_disk(export_sparsify(run, tmp_path / "sp"))
    x = clip_like(64)
    with torch.no_grad():
        top = coder.encode(x)
        z = torch.zeros(len(x), N).scatter_(1, top.top_indices, top.top_acts)
        got = (z.double().numpy(), coder.decode(top.top_acts, top.top_indices).double().numpy())
    assert_same_function(got, msae_outputs(run, x))
