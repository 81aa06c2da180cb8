"""`msae baseline`: the options of one classic dictionary method (a `baselines:` entry of
params.yaml). Torch-free, like every stage config."""

from __future__ import annotations

from pydantic import model_validator

from msae.baselines.variant import Method
from msae.config.base import ConfigError, PathOption, StageConfig, opt

METHOD_HELP = (
    "pca | ica: the linear code of `components` components; kmeans: the nearest of `components` "
    "centroids; dictionary: MiniBatchDictionaryLearning with `components` atoms, coded by OMP with "
    "k atoms; nmf: NMF with `components` atoms of the data shifted to be non-negative, coded by NNLS"
)


class BaselineConfig(StageConfig):
    """Fit a classic dictionary method (scikit-learn) on an embedding store and write it as an SAE
    run directory (config.json, model.safetensors) that `msae evaluate` and `msae concepts` read."""

    embeddings: PathOption = opt(help="training embedding store (.parquet, from msae embed)")
    method: Method = opt(help=METHOD_HELP, pinned=True)
    components: int = opt(help="components, clusters or atoms of the method", ge=1, pinned=True)
    k: int | None = opt(None, "dictionary: non-zero coefficients per sample (OMP)", ge=1)
    alpha: float = opt(1.0, "dictionary: L1 weight of the sparse codes while the atoms are learned", gt=0)
    batch_size: int = opt(256, "dictionary: samples per minibatch", ge=1)
    max_iter: int = opt(100, "iterations (epochs for dictionary learning) at most", ge=1)
    seed: int = opt(0, "random state of the method", ge=0, pinned=True)
    out: PathOption = opt(help="run directory, e.g. results/sae/baseline-<name>/")

    @model_validator(mode="after")
    def _sparsity(self) -> BaselineConfig:
        if self.method == "dictionary" and self.k is None:
            raise ConfigError([("k", "missing (required by method dictionary: OMP's non-zero coefficients)")])
        if self.method != "dictionary" and self.k is not None:
            raise ConfigError([("k", f"only method dictionary takes k (method {self.method} has its own code)")])
        if self.k is not None and self.k > self.components:
            raise ConfigError([("k", f"{self.k} is more than the {self.components} atoms (components)")])
        return self
