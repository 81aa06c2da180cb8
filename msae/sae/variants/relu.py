"""ReLU SAE with the L1 penalty lambda * mean(||z||_1 / ||x~||) (the official code's sparsity term)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from msae.config.base import opt
from msae.sae.variants.base import Variant, VariantOptions

if TYPE_CHECKING:
    import torch

    from msae.sae.model import SparseAutoencoder

GROUP = "variant parameters"


class ReluOptions(VariantOptions):
    l1: float = opt(0.003, "weight of the L1 term mean(||z||_1 / ||x~||)", ge=0, pinned=True, group=GROUP)


class Relu(Variant):
    name = "relu"
    label = "ReLU"
    order = 10
    Options = ReluOptions
    default_lr = 5e-5

    def describe(self, arch: Any) -> str:
        return f"λ = {arch.l1:g}"

    def penalty(
        self, module: SparseAutoencoder, a: torch.Tensor, levels: list[torch.Tensor], x_sq: torch.Tensor
    ) -> torch.Tensor | None:
        from msae.sae.losses import normalized_l1

        l1 = cast(ReluOptions, module.config.arch).l1
        return l1 * normalized_l1(levels[-1], x_sq) if l1 else None


VARIANT = Relu()
