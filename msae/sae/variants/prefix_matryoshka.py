"""Prefix-nested Matryoshka SAE (Bussmann, Nabeshima, Karvonen, Nanda 2025; Nabeshima 2024).

The dictionary is cut into fixed prefix groups m_1 < m_2 < ... < m_h = n. One BatchTopK activation
z is computed over all n latents (the k*B largest pre-activations of the batch); level i keeps
only the latents of the first m_i, and the loss is the mean of the levels' reconstruction losses,
so every prefix must reconstruct the input on its own. Frequent, general features are pushed into
the first prefix and rarer, specific ones into later groups (no feature absorption into a single
latent). Inference uses BatchTopK's threshold over all latents. Train it with AuxK, as Bussmann's
code does (`--auxk-alpha 0.03125`): a latent of a small first prefix that loses the batch top-k
early otherwise stays dead, and its feature moves to a later group.

This is a different object from the paper's Matryoshka (`matryoshka`), which nests sparsity levels
(top-k_1 inside top-k_2, ...) over the whole dictionary. Bussmann's code also averages in the loss
of the empty prefix (the decoder bias alone); inputs here are mean-centred, so it is left out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from msae.config.base import ConfigError, IntList, StageConfig, opt
from msae.sae.variants.base import SparsePlan, VariantOptions
from msae.sae.variants.batchtopk import BatchTopK, update_threshold
from msae.sae.variants.matryoshka import default_nesting
from msae.sae.variants.topk import check_at_most_n, k_option

if TYPE_CHECKING:
    import torch

    from msae.sae.model import SparseAutoencoder
    from msae.sae.sparse import Objective

GROUP = "variant parameters"
DEFAULT_PREFIX_START = 64


class PrefixMatryoshkaOptions(VariantOptions):
    k: int = k_option(32)
    prefixes: IntList | None = opt(
        None,
        "strictly increasing latent counts of the nested prefixes (n is added as the last one); "
        "default: --prefix-start doubling up to n",
        metavar="M1,M2,...",
        group=GROUP,
    )
    prefix_start: int | None = opt(
        None, f"first prefix of the default groups (default {DEFAULT_PREFIX_START})", ge=1, group=GROUP
    )


class PrefixMatryoshkaArchitecture(StageConfig):
    k: int
    prefixes: IntList


def prefix_sizes(options: Any, n: int) -> list[int]:
    """The prefixes of a run, ending with n; a ConfigError names the option that does not fit."""
    if options.prefixes is not None and options.prefix_start is not None:
        raise ConfigError([("prefixes", "give either prefixes or prefix-start, not both")])
    if options.prefixes is None:
        start = options.prefix_start or DEFAULT_PREFIX_START
        if start > n:
            raise ConfigError([("prefix-start", f"{start} is more than the run's number of latents n = {n}")])
        return default_nesting(start, n)
    sizes = list(options.prefixes)
    if not sizes or sizes[0] < 1 or sizes[-1] > n or any(b <= a for a, b in zip(sizes, sizes[1:])):
        raise ConfigError(
            [("prefixes", f"{','.join(map(str, sizes))}: prefixes must increase strictly within 1..n = {n}")]
        )
    return sizes if sizes[-1] == n else [*sizes, n]


class PrefixMatryoshka(BatchTopK):
    """BatchTopK's activation, threshold and k; the loss averaged over the prefixes."""

    name = "prefix_matryoshka"
    label = "Prefix Matryoshka"
    order = 55
    Options = PrefixMatryoshkaOptions  # type: ignore[assignment]
    Architecture = PrefixMatryoshkaArchitecture  # type: ignore[assignment]
    default_lr = 5e-4

    def architecture(self, options: Any, n: int) -> PrefixMatryoshkaArchitecture:  # type: ignore[override]
        check_at_most_n("k", options.k, n)
        return PrefixMatryoshkaArchitecture(k=options.k, prefixes=tuple(prefix_sizes(options, n)))

    def describe(self, arch: Any) -> str:
        return f"k = {arch.k}, prefixes {','.join(map(str, arch.prefixes))}"

    def sparse_plan(self, arch: Any) -> SparsePlan | None:
        return None  # prefix levels are not nested top-k levels: the dense objective computes them

    def train_levels(self, module: SparseAutoencoder, a: torch.Tensor) -> list[torch.Tensor]:
        """The prefixes of one BatchTopK activation; the threshold learns from the whole of it
        (the first level, a prefix, would overestimate the smallest kept activation)."""
        import torch

        from msae.sae.activations import kept_minimum, nested_topk

        arch = cast(PrefixMatryoshkaArchitecture, module.config.arch)
        z = nested_topk(a, [arch.k], over_batch=True)[0]
        update_threshold(module, kept_minimum(z))
        index = torch.arange(z.shape[1], device=z.device)
        return [z if m >= z.shape[1] else z * (index < m).to(z.dtype) for m in arch.prefixes]

    def update_state(self, module: SparseAutoencoder, objective: Objective) -> None:
        """The threshold was updated from the whole activation in `train_levels`."""


VARIANT = PrefixMatryoshka()
