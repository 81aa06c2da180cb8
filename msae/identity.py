"""The identity of a result: content hashes of the model and the data it was computed from.

Every result file (metrics.json of `msae evaluate`, the summary.json of `msae concepts` and of the
probes) carries an `identity` block, e.g. `{"sae": run_identity(SAE_DIR), "embeddings":
store_identity(STORE)}`. A reader that puts results side by side (the report) recomputes the
identity of what lies beside them and refuses a mismatch, so a metrics.json computed from another
SAE (retrained since, replaced, copied from elsewhere) is never reported as this run's.

Torch-free: the report and the params checks can call it without loading a model.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from msae.errors import MsaeError
from msae.interop.hub import resolve
from msae.io import file_sha256, read_json_object
from msae.layout import CONFIG_FILE, MODEL_FILE

IDENTITY_KEY = "identity"


def run_identity(sae_dir: str | os.PathLike[str]) -> str:
    """sha256 of an SAE run: its tensors (the bytes of model.safetensors) and its architecture
    (the SAEConfig config.json describes, as canonical JSON). Run-level keys such as the training
    log do not enter: they do not change what the SAE computes."""
    from msae.sae.architecture import SAEConfig

    directory = resolve(sae_dir)
    config_path, model_path = directory / CONFIG_FILE, directory / MODEL_FILE
    config = read_json_object(config_path, "not a finished SAE run (train it with msae train)")
    architecture = SAEConfig.from_dict(config, str(config_path)).to_dict()
    if not model_path.is_file():
        raise MsaeError(f"{directory}: {MODEL_FILE} is missing")
    digest = hashlib.sha256()
    digest.update(file_sha256(model_path).encode())
    digest.update(json.dumps(architecture, sort_keys=True).encode())
    return digest.hexdigest()


def store_identity(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's bytes (an embedding store, a concepts table): what `msae train` records
    as `data.sha256` of its training store."""
    path = Path(path)
    if not path.is_file():
        raise MsaeError(f"{path}: not found")
    return file_sha256(path)


def identity_block(
    sae: str | os.PathLike[str] | None = None, **inputs: str | os.PathLike[str] | None
) -> dict[str, str]:
    """The `identity` block of a result: `sae` -> run_identity, each named input file ->
    store_identity (inputs given as None are left out)."""
    block = {"sae": run_identity(sae)} if sae is not None else {}
    block.update({name: store_identity(path) for name, path in inputs.items() if path is not None})
    return block


def _short(value: Any) -> str:
    return f"{value[:12]}…" if isinstance(value, str) else repr(value)


def require_identity(result: Mapping[str, Any], expected: Mapping[str, str], where: str) -> None:
    """Refuse a result whose identity block lacks or contradicts one of `expected` (e.g.
    {"sae": run_identity(SAE_DIR)}); `where` names the result file in the message. Nothing
    expected (no model known to compare with): nothing to refuse."""
    if not expected:
        return
    found = result.get(IDENTITY_KEY)
    if not isinstance(found, Mapping):
        raise MsaeError(
            f"{where}: has no '{IDENTITY_KEY}' block, so nothing says which model and data it was computed from; "
            "rerun the stage that wrote it"
        )
    for key, value in expected.items():
        if key not in found:
            raise MsaeError(
                f"{where}: its '{IDENTITY_KEY}' block does not name the {key}; rerun the stage that wrote it"
            )
        if found[key] != value:
            raise MsaeError(
                f"{where}: computed from another {key} (identity {_short(found[key])}) than the one beside it "
                f"({_short(value)}); rerun the stage that wrote it, or remove the stale result"
            )
