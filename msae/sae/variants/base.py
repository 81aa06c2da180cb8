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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from msae.config.base import StageConfig

if TYPE_CHECKING:
    import torch

    from msae.sae.model import SparseAutoencoder
    from msae.sae.sparse import Objective


class VariantOptions(StageConfig):
    """The options a variant adds to `msae train` (declared in the variant's module)."""


@dataclass(frozen=True)
class SparsePlan:
    """A training objective the sparse kernels compute (msae.sae.sparse.nested_objective): the
    weighted mean of the reconstruction losses of nested top-k levels `ks` (ascending), ranked per
    sample or over the whole batch (`over_batch`), with no other loss term."""

    ks: tuple[int, ...]
    weights: tuple[float, ...]
    over_batch: bool


class Variant:
    """Base class: a ReLU-shaped variant with one sparse level and no extra loss term."""

    name: ClassVar[str]
    label: ClassVar[str]  # the paper's name, e.g. "TopK"
    order: ClassVar[int]  # position in tables (the paper's order)
    Options: ClassVar[type[VariantOptions]]
    Architecture: ClassVar[type[StageConfig]]  # config.json's form; the options themselves unless set
    default_lr: ClassVar[float]  # the paper's learning rate for this variant
    trainable: ClassVar[bool] = True  # False: fitted by another command, never by `msae train`
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

    def sparse_plan(self, arch: Any) -> SparsePlan | None:
        """The nested top-k levels of the training objective when the sparse kernels compute it
        (k*d per sample); None: the dense objective (train_levels, level_weights, penalty)."""
        return None

    # ----------------------------------------------------------------- computation (torch)
    def add_state(self, module: SparseAutoencoder) -> None:
        """Register the variant's extra parameters or buffers on a new module."""

    def train_levels(self, module: SparseAutoencoder, a: torch.Tensor) -> list[torch.Tensor]:
        """The training activations, one per nested level in ascending k: the sparse plan's levels
        as masked [B, n] activations (the dense computation the sparse kernels are tested
        against), else ReLU(a)."""
        plan = self.sparse_plan(module.config.arch)
        if plan is None:
            return [a.clamp_min(0)]
        from msae.sae.activations import nested_topk

        return nested_topk(a, list(plan.ks), over_batch=plan.over_batch)

    def level_weights(self, arch: Any, levels: int) -> Sequence[float]:
        """Weights of the levels' reconstruction losses (normalised by their sum): the sparse
        plan's, else equal."""
        plan = self.sparse_plan(arch)
        return list(plan.weights) if plan is not None else [1.0] * levels

    def penalty(
        self, module: SparseAutoencoder, a: torch.Tensor, levels: list[torch.Tensor], x_sq: torch.Tensor
    ) -> torch.Tensor | None:
        """An extra loss term (sparsity penalty), or None."""
        return None

    def update_state(self, module: SparseAutoencoder, objective: Objective) -> None:
        """Fold one training step's result into the variant's non-learned state (BatchTopK's
        inference threshold); called by every training forward, sparse or dense."""

    def infer(self, module: SparseAutoencoder, a: torch.Tensor) -> torch.Tensor:
        """The batch-independent inference activation (the sparse path)."""
        return a.clamp_min(0)

    def rescale(self, module: SparseAutoencoder, norms: torch.Tensor) -> None:
        """Compensate variant state when decoder rows are divided by `norms` (per latent)."""
