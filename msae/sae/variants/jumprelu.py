"""JumpReLU SAE (Rajamanoharan et al. 2024): z = a * H(a - theta) with a learned per-latent
threshold, trained through the straight-through estimator, plus an L0 penalty on the count of
latents above threshold."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from msae.config.base import opt
from msae.sae.variants.base import Variant, VariantOptions

if TYPE_CHECKING:
    import torch

    from msae.sae.model import SparseAutoencoder

GROUP = "variant parameters"


class JumpReluOptions(VariantOptions):
    l0_coef: float = opt(1e-3, "coefficient of the L0 penalty", ge=0, pinned=True, group=GROUP)
    bandwidth: float = opt(0.05, "width of the straight-through rectangle kernel", gt=0, group=GROUP)
    threshold_init: float = opt(0.05, "initial threshold", ge=0, group=GROUP)


class JumpRelu(Variant):
    name = "jumprelu"
    label = "JumpReLU"
    order = 40
    Options = JumpReluOptions
    default_lr = 5e-4

    def add_state(self, module: SparseAutoencoder) -> None:
        import torch

        module.threshold = torch.nn.Parameter(
            torch.full((module.config.n_latents,), float(cast(JumpReluOptions, module.config.arch).threshold_init))
        )

    def train_levels(self, module: SparseAutoencoder, a: torch.Tensor) -> list[torch.Tensor]:
        from msae.sae.activations import jumprelu

        return [jumprelu(a, module.threshold, cast(JumpReluOptions, module.config.arch).bandwidth)]

    def penalty(
        self, module: SparseAutoencoder, a: torch.Tensor, levels: list[torch.Tensor], x_sq: torch.Tensor
    ) -> torch.Tensor | None:
        from msae.sae.activations import step_count

        arch = cast(JumpReluOptions, module.config.arch)
        return arch.l0_coef * step_count(a, module.threshold, arch.bandwidth).mean() if arch.l0_coef else None

    def infer(self, module: SparseAutoencoder, a: torch.Tensor) -> torch.Tensor:
        from msae.sae.activations import threshold_relu

        return threshold_relu(a, module.threshold.clamp_min(0))

    def rescale(self, module: SparseAutoencoder, norms: torch.Tensor) -> None:
        module.threshold.mul_(norms).clamp_min_(0)


VARIANT = JumpRelu()
