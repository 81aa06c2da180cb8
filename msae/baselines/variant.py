"""The `baseline` kind of SAE: a classic dictionary method (msae.baselines) stored as an SAE run
directory, so `msae.sae.load`, evaluate, concepts and the report take it like any trained SAE.

Every method is written as the SAE's maps in its processed space x~ = (x - mean) * scale:
a = (x~ - b_pre) W_enc + b_enc, z = coder(a), x~_hat = z W_dec + b_pre, with unit decoder rows.
The coder is the method's own encoding, computed from the pre-activation alone:

- pca, ica: the linear code split into positive and negative parts (2 latents per component,
  atoms +/-u), so ReLU(a) is exactly the code and the reconstruction is the method's;
- kmeans: the nearest centroid (a_j = x~.c_j - |c_j|^2/2 is largest for it), coded with the
  centroid's norm on its unit atom;
- dictionary: orthogonal matching pursuit with k atoms in Gram form (scikit-learn's
  `orthogonal_mp_gram`: it needs only the correlations D x~, which a holds), +/- split;
- nmf: non-negative least squares against the atoms of an NMF of the shifted, non-negative data
  (x~ - b_pre >= 0, b_pre the training minimum), in Gram form through scipy's `nnls`.

The dense path of a model (ReLU over all of a) equals the coder for pca and ica only; for the
other methods it is the ReLU of the atoms' correlations, so compare those on their own coder (the
sparse path). Baselines are fitted by `msae baseline`, never by `msae train`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, cast

from msae.config.base import ConfigError, StageConfig
from msae.sae.variants.base import Variant, VariantOptions

if TYPE_CHECKING:
    import torch

    from msae.sae.model import SparseAutoencoder

Method = Literal["pca", "ica", "kmeans", "dictionary", "nmf"]
METHOD_LABELS = {
    "pca": "PCA",
    "ica": "ICA",
    "kmeans": "k-means",
    "dictionary": "dictionary learning + OMP",
    "nmf": "NMF",
}
SPLIT = ("pca", "ica", "dictionary")  # signed codes: two latents (+/-) per component
LINEAR = ("pca", "ica")  # ReLU(a) is the coder


class BaselineArchitecture(StageConfig):
    method: Method
    components: int
    k: int | None = None  # OMP's non-zero coefficients (dictionary)


def latent_count(method: str, components: int) -> int:
    """Latents of a method with `components` components, clusters or atoms."""
    return 2 * components if method in SPLIT else components


class Baseline(Variant):
    """A classic dictionary method behind the SAE interface (fitted by `msae baseline`)."""

    name = "baseline"
    label = "Baseline"
    order = 90
    Options = VariantOptions
    Architecture = BaselineArchitecture
    trainable = False  # fitted by `msae baseline`

    def describe(self, arch: Any) -> str:
        counts = {"kmeans": "clusters", "dictionary": "atoms"}.get(arch.method, "components")
        detail = f"{METHOD_LABELS[arch.method]}, {arch.components} {counts}"
        return f"{detail}, k = {arch.k}" if arch.k is not None else detail

    def dense_is_coder(self, arch: Any) -> bool:
        """Whether ReLU over all latents (the dense path, and top-k of it) is the method's own
        code: true for the linear methods only."""
        return arch.method in LINEAR

    def add_state(self, module: SparseAutoencoder) -> None:
        """k-means codes a sample with its centroid's norm (its `gain`) on the unit atom."""
        import torch

        if cast(BaselineArchitecture, module.config.arch).method == "kmeans":
            module.register_buffer("gain", torch.ones(module.config.n_latents))

    def train_levels(self, module: SparseAutoencoder, a: torch.Tensor) -> list[torch.Tensor]:
        raise ConfigError([("variant", "baseline models are fitted by `msae baseline`, not trained")])

    def infer(self, module: SparseAutoencoder, a: torch.Tensor) -> torch.Tensor:
        from msae.baselines.coders import encode

        return encode(module, a)


VARIANT = Baseline()
