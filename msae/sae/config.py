"""The architecture of one SAE: variant, sizes and the variant's sparsity parameters.

Defaults follow the paper's configs (msae-reference §3): TopK k=64, BatchTopK k=32, ReLU
lambda=0.003, Matryoshka nesting 64 doubling up to n plus n with RW weighting and a TopK inner
activation. `validate` turns every impossible combination into a clear MsaeError before any
training starts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from msae.errors import MsaeError
from msae.sae.losses import RECONSTRUCTION_LOSSES, WEIGHTINGS

VARIANTS = ("relu", "topk", "batchtopk", "matryoshka", "jumprelu")
SCALE_MODES = ("rms", "paper")
INNER_ACTIVATIONS = ("topk", "batchtopk")
DEFAULT_K = {"topk": 64, "batchtopk": 32}
DEFAULT_L1 = 0.003
DEFAULT_NESTING_START = 64
DEFAULT_L0_COEF = 1e-3
DEFAULT_BANDWIDTH = 0.05
DEFAULT_THRESHOLD_INIT = 0.05
DEFAULT_AUXK_K = 512
USED_BY = {
    "k": ("topk", "batchtopk"),
    "l1": ("relu",),
    "nesting": ("matryoshka",),
    "nesting-start": ("matryoshka",),
    "l0-coef": ("jumprelu",),
    "bandwidth": ("jumprelu",),
    "threshold-init": ("jumprelu",),
}


@dataclass
class SAEConfig:
    """Everything needed to rebuild the module from its tensors (stored in config.json)."""

    variant: str
    d: int
    n_latents: int
    k: int | None = None
    nesting: list[int] | None = None
    weighting: str | None = None
    inner: str | None = None
    l1: float | None = None
    l0_coef: float | None = None
    bandwidth: float | None = None
    threshold_init: float | None = None
    loss: str = "nmse"
    scale_mode: str = "rms"
    auxk_alpha: float = 0.0
    auxk_k: int | None = None

    def validate(self) -> SAEConfig:
        """Raise MsaeError naming the bad parameter; return self for chaining."""
        if self.variant not in VARIANTS:
            raise MsaeError(f"--variant {self.variant!r}: choose from {', '.join(VARIANTS)}")
        if self.d < 1 or self.n_latents < 1:
            raise MsaeError(f"SAE sizes must be positive (d={self.d}, n_latents={self.n_latents})")
        if self.loss not in RECONSTRUCTION_LOSSES:
            raise MsaeError(f"--loss {self.loss!r}: choose from {', '.join(RECONSTRUCTION_LOSSES)}")
        if self.scale_mode not in SCALE_MODES:
            raise MsaeError(f"--scale-mode {self.scale_mode!r}: choose from {', '.join(SCALE_MODES)}")
        n = self.n_latents
        if self.variant in ("topk", "batchtopk"):
            if self.k is None or not 1 <= self.k <= n:
                raise MsaeError(f"--k {self.k}: must be between 1 and the number of latents n={n}")
        if self.variant == "matryoshka":
            nest = self.nesting or []
            if not nest:
                raise MsaeError("--nesting: Matryoshka needs at least one level")
            if any(b <= a for a, b in zip(nest, nest[1:])):
                raise MsaeError(f"--nesting {','.join(map(str, nest))}: levels must be strictly increasing")
            if nest[0] < 1 or nest[-1] > n:
                raise MsaeError(f"--nesting {','.join(map(str, nest))}: levels must lie in 1..n={n}")
            if self.weighting not in WEIGHTINGS:
                raise MsaeError(f"--weighting {self.weighting!r}: choose from {', '.join(WEIGHTINGS)}")
            if self.inner not in INNER_ACTIVATIONS:
                raise MsaeError(f"--inner {self.inner!r}: choose from {', '.join(INNER_ACTIVATIONS)}")
        if self.variant == "relu" and (self.l1 is None or self.l1 < 0):
            raise MsaeError(f"--l1 {self.l1}: must be >= 0")
        if self.variant == "jumprelu":
            if self.l0_coef is None or self.l0_coef < 0:
                raise MsaeError(f"--l0-coef {self.l0_coef}: must be >= 0")
            if self.bandwidth is None or self.bandwidth <= 0:
                raise MsaeError(f"--bandwidth {self.bandwidth}: must be > 0")
            if self.threshold_init is None or self.threshold_init < 0:
                raise MsaeError(f"--threshold-init {self.threshold_init}: must be >= 0")
        if self.auxk_alpha < 0:
            raise MsaeError(f"--auxk-alpha {self.auxk_alpha}: must be >= 0")
        if self.auxk_alpha > 0 and (self.auxk_k is None or not 1 <= self.auxk_k <= n):
            raise MsaeError(f"--auxk-k {self.auxk_k}: must be between 1 and n={n}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SAEConfig:
        """Rebuild from config.json, ignoring the run-level keys stored beside the architecture."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def default_nesting(start: int, n: int) -> list[int]:
    """The paper's nesting: start, doubling while <= n, then n itself (msae-reference §1.3)."""
    if not 1 <= start <= n:
        raise MsaeError(f"--nesting-start {start}: must be between 1 and n={n}")
    levels = [start]
    while levels[-1] * 2 <= n:
        levels.append(levels[-1] * 2)
    if levels[-1] != n:
        levels.append(n)
    return levels


def make_config(
    variant: str,
    d: int,
    expansion: float,
    *,
    k: int | None = None,
    l1: float | None = None,
    nesting: list[int] | None = None,
    nesting_start: int | None = None,
    weighting: str = "rw",
    inner: str = "topk",
    l0_coef: float | None = None,
    bandwidth: float | None = None,
    threshold_init: float | None = None,
    loss: str = "nmse",
    scale_mode: str = "rms",
    auxk_alpha: float = 0.0,
    auxk_k: int | None = None,
) -> SAEConfig:
    """An SAEConfig with the paper's defaults filled in for whichever parameters the variant uses
    (parameters of other variants are dropped so config.json shows only what mattered)."""
    if expansion <= 0:
        raise MsaeError(f"--expansion {expansion}: must be > 0")
    n = int(expansion * d)
    if n < 1:
        raise MsaeError(f"--expansion {expansion}: gives {n} latents for d={d}")
    given = {"k": k, "l1": l1, "nesting": nesting, "nesting-start": nesting_start, "l0-coef": l0_coef,
             "bandwidth": bandwidth, "threshold-init": threshold_init}
    unused = [f"--{name}" for name, value in given.items() if value is not None and variant not in USED_BY[name]]
    if unused:
        raise MsaeError(f"{', '.join(unused)} do(es) not apply to --variant {variant}")
    cfg = SAEConfig(variant=variant, d=d, n_latents=n, loss=loss, scale_mode=scale_mode, auxk_alpha=auxk_alpha)
    if variant in DEFAULT_K:
        cfg.k = DEFAULT_K[variant] if k is None else k
    elif variant == "relu":
        cfg.l1 = DEFAULT_L1 if l1 is None else l1
    elif variant == "matryoshka":
        cfg.nesting = list(nesting) if nesting else default_nesting(nesting_start or DEFAULT_NESTING_START, n)
        cfg.weighting, cfg.inner = weighting, inner
    elif variant == "jumprelu":
        cfg.l0_coef = DEFAULT_L0_COEF if l0_coef is None else l0_coef
        cfg.bandwidth = DEFAULT_BANDWIDTH if bandwidth is None else bandwidth
        cfg.threshold_init = DEFAULT_THRESHOLD_INIT if threshold_init is None else threshold_init
    if auxk_alpha > 0:
        cfg.auxk_k = min(DEFAULT_AUXK_K, n) if auxk_k is None else auxk_k
    return cfg.validate()
