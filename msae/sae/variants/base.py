"""What a variant is: the one place that knows its activations, loss terms and options.

A variant module defines a `Variant` subclass instance named `VARIANT`; the registry
(`msae.sae.variants`) discovers the modules, so adding a variant is one new file. The class is
importable without torch (the command line lists variants and their options without loading it);
the methods that compute import their torch helpers when called.

Every method that takes `arch` receives the variant's resolved architecture (its `Architecture`
model, stored in config.json); `module` is the `SparseAutoencoder` being trained or evaluated and
`a` its pre-activations [B, n].
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from msae.config.base import StageConfig

if TYPE_CHECKING:
    import torch

    from msae.sae.model import SparseAutoencoder


class VariantOptions(StageConfig):
    """The options a variant adds to `msae train` (declared in the variant's module)."""


def default_progressive_ks(n: int) -> list[int]:
    """The k grid of progressive recovery for every variant: 16, 32, ... doubling while <= n,
    plus n (the official score_topk grid)."""
    ks = [k for k in (16 * 2**i for i in range(64)) if k <= n]
    return ks + [n] if not ks or ks[-1] != n else ks


class Variant:
    """Base class: a ReLU-shaped variant with one sparse level and no extra loss term."""

    name: ClassVar[str]
    label: ClassVar[str]  # the paper's name, e.g. "TopK"
    order: ClassVar[int]  # position in tables (the paper's order)
    Options: ClassVar[type[VariantOptions]]
    Architecture: ClassVar[type[StageConfig]]  # config.json's form; the options themselves unless set
    default_lr: ClassVar[float]  # the paper's learning rate for this variant
    nested: ClassVar[bool] = False  # several nested sparse levels (drawn as one curve per run)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "Options" in cls.__dict__ and "Architecture" not in cls.__dict__:
            cls.Architecture = cls.Options

    # ----------------------------------------------------------------- declarations (torch-free)
    def architecture(self, options: Any, n: int) -> StageConfig:
        """The resolved architecture parameters for n latents (defaults filled, ranges checked
        against n; a ConfigError names the option)."""
        return self.Architecture.model_validate(options.model_dump(include=set(self.Architecture.model_fields)))

    def describe(self, arch: Any) -> str:
        """The detail shown after the label, e.g. 'k = 64' (empty when there is none)."""
        return ""

    def sparse_levels(self, arch: Any) -> list[int | None]:
        """The k of each sparse level ([None] when the sparse path is not a top-k)."""
        return [None]

    def sparse_topk(self, arch: Any) -> int | None:
        """The k at which the sparse path equals the top-k of the dense ReLU(a), if it does."""
        return None

    def progressive_ks(self, arch: Any, n: int) -> list[int]:
        return default_progressive_ks(n)

    # ----------------------------------------------------------------- computation (torch)
    def add_state(self, module: SparseAutoencoder) -> None:
        """Register the variant's extra parameters or buffers on a new module."""

    def train_levels(self, module: SparseAutoencoder, a: torch.Tensor) -> list[torch.Tensor]:
        """The training activations, one per nested level in ascending k (one level for most)."""
        return [a.clamp_min(0)]

    def level_weights(self, arch: Any, levels: int) -> Sequence[float]:
        """Weights of the levels' reconstruction losses (normalised by their sum)."""
        return [1.0] * levels

    def penalty(
        self, module: SparseAutoencoder, a: torch.Tensor, levels: list[torch.Tensor], x_sq: torch.Tensor
    ) -> torch.Tensor | None:
        """An extra loss term (sparsity penalty), or None."""
        return None

    def infer(self, module: SparseAutoencoder, a: torch.Tensor) -> torch.Tensor:
        """The batch-independent inference activation (the sparse path)."""
        return a.clamp_min(0)

    def rescale(self, module: SparseAutoencoder, norms: torch.Tensor) -> None:
        """Compensate variant state when decoder rows are divided by `norms` (per latent)."""
