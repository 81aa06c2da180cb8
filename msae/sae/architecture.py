"""The architecture of one trained SAE, as config.json records it: variant, sizes, the input
normalisation and loss, and the variant's own resolved parameters (`arch`).

Torch-free, so the command line, the params check and the report can read it without loading a
model. config.json stores it flat (`k`, `nesting`, ... beside `d` and `n_latents`) next to the
run-level keys (training, data provenance, final metrics).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, SerializeAsAny

from msae.config.base import ConfigError, StageConfig
from msae.sae import variants
from msae.sae.variants.base import Variant

ScaleMode = Literal["rms", "paper"]
Reconstruction = Literal["nmse", "mse"]
DEFAULT_AUXK_K = 512


class SAEConfig(StageConfig):
    """Everything needed to rebuild the module from its tensors."""

    variant: str
    d: int = Field(ge=1)
    n_latents: int = Field(ge=1)
    arch: SerializeAsAny[StageConfig]
    loss: Reconstruction = "nmse"
    scale_mode: ScaleMode = "rms"
    auxk_alpha: float = Field(0.0, ge=0)
    auxk_k: int | None = Field(None, ge=1)

    @property
    def kind(self) -> Variant:
        """The variant object that computes this SAE's activations and losses."""
        return variants.get(self.variant)

    def describe(self) -> str:
        """Short label in the paper's style, e.g. 'TopK (k = 64)'."""
        detail = self.kind.describe(self.arch)
        return f"{self.kind.label} ({detail})" if detail else self.kind.label

    def to_dict(self) -> dict[str, Any]:
        """The flat config.json form (field names, JSON values)."""
        common = self.model_dump(mode="json", exclude={"arch"})
        return {**common, **self.arch.model_dump(mode="json")}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "config.json") -> SAEConfig:
        """Rebuild from config.json (unknown run-level keys are ignored); a ConfigError names the
        file and the bad key."""
        try:
            if not isinstance(data.get("variant"), str):
                raise ConfigError(
                    [("variant", f"{data.get('variant')!r}: expected one of {', '.join(variants.registry())}")]
                )
            kind = variants.registry().get(data["variant"])
            if kind is None:
                raise ConfigError(
                    [("variant", f"{data['variant']!r}: expected one of {', '.join(variants.registry())}")]
                )
            arch_keys = set(kind.Architecture.model_fields)
            arch = _build(kind.Architecture, {k: v for k, v in data.items() if k in arch_keys})
            common = {k: data[k] for k in cls.model_fields if k in data and k != "arch"}
            return _build(cls, {**common, "arch": arch})
        except ConfigError as exc:
            raise exc.located("file", source) from None


def _build(model: type[StageConfig], values: Mapping[str, Any]) -> Any:
    from msae.config.base import build

    return build(model, values)


def resolve(options: Any, d: int) -> SAEConfig:
    """The architecture a `msae train` config gives on d-dimensional data (defaults filled, every
    range checked against n = int(expansion x d); a ConfigError names the option)."""
    n = int(options.expansion * d)
    if n < 1:
        raise ConfigError([("expansion", f"{options.expansion} gives {n} latents for d = {d}")])
    kind = variants.get(options.variant)
    arch = kind.architecture(options, n)
    auxk_k = options.auxk_k
    if options.auxk_alpha > 0:
        auxk_k = min(DEFAULT_AUXK_K, n) if auxk_k is None else auxk_k
        if auxk_k > n:
            raise ConfigError([("auxk-k", f"{auxk_k} is more than the run's number of latents n = {n}")])
    return SAEConfig(
        variant=kind.name,
        d=d,
        n_latents=n,
        arch=arch,
        loss=options.loss,
        scale_mode=options.scale_mode,
        auxk_alpha=options.auxk_alpha,
        auxk_k=auxk_k if options.auxk_alpha > 0 else None,
    )
