"""Where a trained SAE came from: its run directory, the training data (path, content hash,
backbone) and the end of training. Torch-free; `msae.sae.load` attaches it to the module as
`sae.record`, and every stage that feeds the SAE a store checks compatibility through it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from msae.errors import MsaeError
from msae.layout import CONFIG_FILE
from msae.store import require_same_backbone

DATA_KEYS = ("path", "sha256", "rows", "placement", "model", "pretrained", "modality", "dataset", "split")


@dataclass(frozen=True)
class DataProvenance:
    """The embedding store an SAE was trained on, as config.json records it."""

    path: str | None = None  # None for a run imported from another library
    sha256: str | None = None
    model: str | None = None
    pretrained: str | None = None
    modality: str | None = None
    dataset: str | None = None
    split: str | None = None
    rows: int | None = None
    placement: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DataProvenance:
        return cls(**{k: data.get(k) for k in DATA_KEYS if k in data})  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in DATA_KEYS}

    @property
    def backbone(self) -> dict[str, Any]:
        return {"model": self.model, "pretrained": self.pretrained}


@dataclass(frozen=True)
class RunRecord:
    """A trained run: its directory, training data and what config.json says beyond the architecture."""

    directory: Path
    data: DataProvenance | None
    training: dict[str, Any] = field(default_factory=dict)
    final: dict[str, Any] = field(default_factory=dict)
    final_dead_latents: int | None = None

    @classmethod
    def from_config(cls, directory: Path, config: Mapping[str, Any]) -> RunRecord:
        for key in ("training", "final"):  # run-level blocks: JSON objects when present
            value = config.get(key)
            if value is not None and not isinstance(value, Mapping):
                raise MsaeError(f"{directory / CONFIG_FILE}: {key} must be a JSON object, found {type(value).__name__}")
        data = config.get("data")
        dead = config.get("final_dead_latents")
        return cls(
            directory=directory,
            data=DataProvenance.from_dict(data) if isinstance(data, Mapping) else None,
            training=dict(config.get("training") or {}),
            final=dict(config.get("final") or {}),
            final_dead_latents=int(dead) if isinstance(dead, (int, float)) and not isinstance(dead, bool) else None,
        )

    def require_same_backbone(self, meta: Mapping[str, Any], where: str) -> None:
        """Refuse a store embedded with another backbone than the training data (naming both)."""
        if self.data is None or self.data.model is None or self.data.pretrained is None:
            return
        require_same_backbone(meta, where, self.data.backbone, f"the SAE in {self.directory} was trained on")
