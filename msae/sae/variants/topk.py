"""TopK SAE (Gao et al. 2024): each sample keeps ReLU of its k largest pre-activations."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from msae.config.base import ConfigError, opt
from msae.sae.variants.base import SparsePlan, Variant, VariantOptions

if TYPE_CHECKING:
    import torch

    from msae.sae.model import SparseAutoencoder

GROUP = "variant parameters"


def k_option(default: int) -> Any:
    """The k of the top-k family (TopK, BatchTopK share the option, not the default)."""
    return opt(
        default, "active latents per sample (BatchTopK: on average over the batch)", ge=1, pinned=True, group=GROUP
    )


def check_at_most_n(key: str, value: int, n: int) -> None:
    if value > n:
        raise ConfigError([(key, f"{value} is more than the run's number of latents n = int(expansion x d) = {n}")])


class TopKOptions(VariantOptions):
    k: int = k_option(64)


class TopK(Variant):
    name = "topk"
    label = "TopK"
    order = 20
    Options = TopKOptions
    default_lr = 5e-4

    def architecture(self, options: Any, n: int) -> TopKOptions:
        check_at_most_n("k", options.k, n)
        return super().architecture(options, n)  # type: ignore[return-value]

    def describe(self, arch: Any) -> str:
        return f"k = {arch.k}"

    def sparse_levels(self, arch: Any) -> list[int | None]:
        return [arch.k]

    def sparse_topk(self, arch: Any) -> int | None:
        return int(arch.k)

    def sparse_plan(self, arch: Any) -> SparsePlan | None:
        return SparsePlan((int(arch.k),), (1.0,), over_batch=False)

    def infer(self, module: SparseAutoencoder, a: torch.Tensor) -> torch.Tensor:
        from msae.sae.activations import nested_topk

        return nested_topk(a, [cast(TopKOptions, module.config.arch).k], over_batch=False)[0]


VARIANT = TopK()
