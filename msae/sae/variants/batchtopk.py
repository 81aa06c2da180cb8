"""BatchTopK SAE (Bussmann et al. 2024): the k*B largest activations of the whole batch are kept
in training; inference uses a threshold estimated during training (the official code has none),
so a sample's latents do not depend on the batch it comes in.

The threshold is a bias-corrected EMA (decay 0.99) of each training batch's smallest kept
activation, updated on the device without a host sync.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from msae.sae.variants.base import SparsePlan, VariantOptions
from msae.sae.variants.topk import TopK, k_option

if TYPE_CHECKING:
    import torch

    from msae.sae.model import SparseAutoencoder
    from msae.sae.sparse import Objective

THRESHOLD_DECAY = 0.99


class BatchTopKOptions(VariantOptions):
    k: int = k_option(32)


def add_threshold_state(module: SparseAutoencoder) -> None:
    """The inference threshold and its EMA state, saved with the model."""
    import torch

    module.register_buffer("threshold", torch.zeros(()))
    module.register_buffer("threshold_ema", torch.zeros(()))
    module.register_buffer("threshold_updates", torch.zeros((), dtype=torch.int64))


def update_threshold(module: SparseAutoencoder, kept_min: torch.Tensor) -> None:
    """Fold one training batch's smallest kept activation into the threshold estimate."""
    import torch

    with torch.no_grad():
        module.threshold_ema.mul_(THRESHOLD_DECAY).add_((1 - THRESHOLD_DECAY) * kept_min)
        module.threshold_updates.add_(1)
        correction = 1 - torch.pow(THRESHOLD_DECAY, module.threshold_updates)
        module.threshold.copy_(module.threshold_ema / correction)


def threshold_activation(module: SparseAutoencoder, a: torch.Tensor) -> torch.Tensor:
    from msae.sae.activations import threshold_relu

    return threshold_relu(a, module.threshold.clamp_min(0))


class BatchTopK(TopK):
    """TopK's k and checks; the top k*B of the batch in training, a threshold at inference."""

    name = "batchtopk"
    label = "BatchTopK"
    order = 30
    Options = BatchTopKOptions  # type: ignore[assignment]  # the same option, another default
    default_lr = 5e-4

    def sparse_levels(self, arch: Any) -> list[int | None]:
        return [None]  # a threshold, not a top-k

    def sparse_topk(self, arch: Any) -> int | None:
        return None

    def sparse_plan(self, arch: Any) -> SparsePlan | None:
        return SparsePlan((int(arch.k),), (1.0,), over_batch=True)

    def add_state(self, module: SparseAutoencoder) -> None:
        add_threshold_state(module)

    def update_state(self, module: SparseAutoencoder, objective: Objective) -> None:
        update_threshold(module, objective.kept_min)

    def infer(self, module: SparseAutoencoder, a: torch.Tensor) -> torch.Tensor:
        return threshold_activation(module, a)


VARIANT = BatchTopK()
