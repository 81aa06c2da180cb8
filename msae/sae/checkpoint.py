"""The SAE checkpoint directory: model.safetensors + config.json, config written last.

No pickles in the published checkpoint: tensors go to safetensors, everything else to JSON.
`load(dir)` rebuilds the module from config.json alone, so file names carry no configuration.
The resumable training state (optimiser moments, step, RNG) is a separate file under
checkpoint/, read with `weights_only=True`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from msae import __version__
from msae.errors import MsaeError
from msae.io import atomic_path, read_json_object, write_json_atomic
from msae.layout import CONFIG_FILE, MODEL_FILE
from msae.sae.architecture import SAEConfig
from msae.sae.model import SparseAutoencoder
from msae.sae.provenance import RunRecord

SCHEMA_VERSION = 1


def save_tensors(model: SparseAutoencoder, path: str | os.PathLike[str]) -> Path:
    """All persistent tensors (parameters and buffers) of the module, atomically."""
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))
    return Path(path)


def save(model: SparseAutoencoder, directory: str | os.PathLike[str], info: dict[str, Any] | None = None) -> Path:
    """Write model.safetensors then config.json (the 'done' file) into `directory`.

    `info` holds run-level keys (training params, data provenance, final_dead_latents) stored
    beside the architecture in config.json."""
    out = Path(directory)
    save_tensors(model, out / MODEL_FILE)
    config = {"schema_version": SCHEMA_VERSION, **model.config.to_dict(), **(info or {}), "msae_version": __version__}
    write_json_atomic(out / CONFIG_FILE, config)
    return out


def read_config(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """config.json of a finished run, with a clear error when the run is absent or unfinished."""
    path = Path(directory) / CONFIG_FILE
    if not path.exists():
        raise MsaeError(f"{directory}: no {CONFIG_FILE}; not a finished SAE run (train it with msae train)")
    config = read_json_object(path)
    if config.get("schema_version") != SCHEMA_VERSION:
        raise MsaeError(f"{path}: schema_version {config.get('schema_version')!r} is not {SCHEMA_VERSION}")
    return config


def load(directory: str | os.PathLike[str], device: str | torch.device = "cpu") -> SparseAutoencoder:
    """The trained SAE in eval mode on `device`, parameters frozen (outputs need no .detach());
    it maps RAW embeddings (preprocessing inside). `sae.record` says where it came from.
    `directory` may be `hf://owner/repo[/subdir][@revision]`, read through the Hugging Face Hub's
    cache (offline when HF_HUB_OFFLINE=1)."""
    if isinstance(directory, str) and directory.startswith("hf://"):
        from msae.interop.hub import resolve_hf

        directory = resolve_hf(directory)
    directory = Path(directory)
    config = read_config(directory)
    model = SparseAutoencoder(SAEConfig.from_dict(config, str(directory / CONFIG_FILE)))
    tensors_path = directory / MODEL_FILE
    if not tensors_path.exists():
        raise MsaeError(f"{directory}: {MODEL_FILE} is missing")
    try:
        tensors = load_file(str(tensors_path))
    except Exception as exc:  # safetensors raises its own error types for truncated/foreign files
        raise MsaeError(f"{tensors_path}: cannot read the tensors ({exc})") from exc
    try:
        model.load_state_dict(tensors)
    except RuntimeError as exc:
        raise MsaeError(f"{tensors_path}: tensors do not match {CONFIG_FILE} ({exc})") from exc
    bad = [name for name, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise MsaeError(f"{tensors_path}: non-finite values (NaN/inf) in {', '.join(sorted(bad))}")
    model.record = RunRecord.from_config(directory, config)
    return model.requires_grad_(False).to(device).eval()


def save_training_state(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Resumable training state (tensors and plain values only), atomically."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


def load_training_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: say which one
        raise MsaeError(f"{path}: cannot read the training checkpoint ({exc})") from exc
