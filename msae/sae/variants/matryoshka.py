"""Matryoshka SAE of the paper (MSAE): one dictionary trained at several nested sparsities.

Each level i keeps the top-k_i pre-activations (k_1 < ... < k_h, the paper's default: k_1
doubling up to n, plus n, so the last level is the dense ReLU); the loss is the alpha-weighted
mean of the levels' reconstruction losses with no sparsity term. Weighting `rw` gives
alpha = [h, ..., 1] on ascending k (the sparsest level weighs most, as the official code does),
`uw` all ones. At inference the sparse path is the smallest level: its per-sample top-k, or with
the batchtopk inner activation a threshold estimated in training as BatchTopK's (the official code
uses per-sample top-k there, so a sample's latents would follow another rule than in training).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, cast

from msae.config.base import ConfigError, IntList, StageConfig, opt
from msae.sae.variants.base import SparsePlan, Variant, VariantOptions

if TYPE_CHECKING:
    import torch

    from msae.sae.model import SparseAutoencoder
    from msae.sae.sparse import Objective

GROUP = "variant parameters"
DEFAULT_NESTING_START = 64
Weighting = Literal["rw", "uw"]
Inner = Literal["topk", "batchtopk"]


class MatryoshkaOptions(VariantOptions):
    nesting: IntList | None = opt(
        None,
        "strictly increasing k of the nested levels (<= n); default: --nesting-start doubling up to n, plus n",
        metavar="K1,K2,...",
        group=GROUP,
    )
    nesting_start: int | None = opt(
        None, f"first level of the default nesting (default {DEFAULT_NESTING_START})", ge=1, group=GROUP
    )
    weighting: Weighting = opt(
        "rw", "level weights: rw = h..1 (the sparsest level weighs most) or uw = all 1", pinned=True, group=GROUP
    )
    inner: Inner = opt("topk", "activation of each level", group=GROUP)


class MatryoshkaArchitecture(StageConfig):
    nesting: IntList
    weighting: Weighting
    inner: Inner


def default_nesting(start: int, n: int) -> list[int]:
    """The paper's nesting: start, doubling while <= n, then n itself."""
    levels = [start]
    while levels[-1] * 2 <= n:
        levels.append(levels[-1] * 2)
    if levels[-1] != n:
        levels.append(n)
    return levels


def level_weights(levels: int, weighting: str) -> list[float]:
    """alpha per level in ascending-k order (not normalised)."""
    return [float(levels - i) for i in range(levels)] if weighting == "rw" else [1.0] * levels


class Matryoshka(Variant):
    name = "matryoshka"
    label = "Matryoshka"
    order = 50
    Options = MatryoshkaOptions
    Architecture = MatryoshkaArchitecture
    default_lr = 1e-4
    nested = True

    def architecture(self, options: Any, n: int) -> MatryoshkaArchitecture:
        if options.nesting is not None and options.nesting_start is not None:
            raise ConfigError([("nesting", "give either nesting or nesting-start, not both")])
        if options.nesting is not None:
            levels = list(options.nesting)
            if not levels or any(b <= a for a, b in zip(levels, levels[1:])) or levels[0] < 1 or levels[-1] > n:
                raise ConfigError(
                    [("nesting", f"{','.join(map(str, levels))}: levels must increase strictly within 1..n = {n}")]
                )
        else:
            start = options.nesting_start or DEFAULT_NESTING_START
            if start > n:
                raise ConfigError([("nesting-start", f"{start} is more than the run's number of latents n = {n}")])
            levels = default_nesting(start, n)
        return MatryoshkaArchitecture(nesting=tuple(levels), weighting=options.weighting, inner=options.inner)

    def describe(self, arch: Any) -> str:
        return str(arch.weighting).upper()

    def sparse_levels(self, arch: Any) -> list[int | None]:
        return list(arch.nesting)

    def sparse_topk(self, arch: Any) -> int | None:
        return None if arch.inner == "batchtopk" else int(arch.nesting[0])

    def sparse_plan(self, arch: Any) -> SparsePlan | None:
        nesting = tuple(int(k) for k in arch.nesting)
        return SparsePlan(nesting, tuple(level_weights(len(nesting), arch.weighting)), arch.inner == "batchtopk")

    def add_state(self, module: SparseAutoencoder) -> None:
        if cast(MatryoshkaArchitecture, module.config.arch).inner == "batchtopk":
            from msae.sae.variants.batchtopk import add_threshold_state

            add_threshold_state(module)

    def update_state(self, module: SparseAutoencoder, objective: Objective) -> None:
        if cast(MatryoshkaArchitecture, module.config.arch).inner == "batchtopk":
            from msae.sae.variants.batchtopk import update_threshold

            update_threshold(module, objective.kept_min)  # the smallest level's, the inference path

    def infer(self, module: SparseAutoencoder, a: torch.Tensor) -> torch.Tensor:
        from msae.sae.activations import nested_topk
        from msae.sae.variants.batchtopk import threshold_activation

        arch = cast(MatryoshkaArchitecture, module.config.arch)
        if arch.inner == "batchtopk":
            return threshold_activation(module, a)
        return nested_topk(a, [arch.nesting[0]], over_batch=False)[0]


VARIANT = Matryoshka()
