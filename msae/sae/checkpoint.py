"""The SAE checkpoint directory (DESIGN §3): model.safetensors + config.json, config written last.

No pickles in the published checkpoint: tensors go to safetensors, everything else to JSON.
`load(dir)` rebuilds the module from config.json alone, so file names carry no configuration.
The resumable training state (optimiser moments, step, RNG) is a separate file under
checkpoint/, read with `weights_only=True`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from msae import __version__
from msae.errors import MsaeError
from msae.io import atomic_path, write_json_atomic
from msae.sae.config import SAEConfig
from msae.sae.model import SparseAutoencoder

SCHEMA_VERSION = 1
MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TRAINING_STATE_FILE = "state.pt"


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
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise MsaeError(f"{path}: not valid JSON ({exc})") from exc
    if config.get("schema_version") != SCHEMA_VERSION:
        raise MsaeError(f"{path}: schema_version {config.get('schema_version')} is not {SCHEMA_VERSION}")
    return config


def load(directory: str | os.PathLike[str], device: str | torch.device = "cpu") -> SparseAutoencoder:
    """The trained SAE in eval mode on `device`, parameters frozen (outputs need no .detach());
    it maps RAW embeddings (preprocessing inside). The full config.json is `module.info`."""
    config = read_config(directory)
    model = SparseAutoencoder(SAEConfig.from_dict(config))
    tensors_path = Path(directory) / MODEL_FILE
    if not tensors_path.exists():
        raise MsaeError(f"{directory}: {MODEL_FILE} is missing")
    try:
        model.load_state_dict(load_file(str(tensors_path)))
    except RuntimeError as exc:
        raise MsaeError(f"{tensors_path}: tensors do not match config.json ({exc})") from exc
    model.info = config
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
