"""Fit a classic dictionary method with scikit-learn and write it as an SAE run directory.

The data is centred and scaled exactly as `msae train` does (training mean, RMS scale), so the
atoms live in the same processed space as the SAEs' and the comparison is like for like. The
method's linear parts become the SAE's tensors (msae.baselines.variant documents each map); the
module is saved with `msae.sae.save`, so `msae.sae.load` rebuilds it.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from msae import store
from msae.baselines.config import BaselineConfig
from msae.baselines.variant import BaselineArchitecture, latent_count
from msae.errors import MsaeError
from msae.io import file_sha256, staged_dir
from msae.layout import CONFIG_FILE
from msae.sae import checkpoint
from msae.sae.architecture import SAEConfig
from msae.sae.model import SparseAutoencoder, scale_factor

FIT_KEYS = ("method", "components", "k", "alpha", "batch_size", "max_iter", "seed")


@dataclass
class Parts:
    """The SAE tensors of a fitted method (processed space, float64): W_enc [d, n], W_dec [n, d]."""

    w_enc: np.ndarray
    b_enc: np.ndarray
    w_dec: np.ndarray
    b_pre: np.ndarray
    gain: np.ndarray | None = None


def _unit_rows(atoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    norms = np.linalg.norm(atoms, axis=1)
    norms = np.where(norms > 0, norms, 1.0)
    return atoms / norms[:, None], norms


def _signed(encoder: np.ndarray, atoms: np.ndarray, b_pre: np.ndarray) -> Parts:
    """A signed linear code s = (x~ - b_pre) encoder [d, m], x~_hat = s atoms + b_pre, as 2m
    ReLU latents on unit atoms +/-u (each atom's norm folded into its encoder column)."""
    unit, norms = _unit_rows(atoms)
    enc = encoder * norms[None, :]
    m = atoms.shape[0]
    return Parts(np.hstack([enc, -enc]), np.zeros(2 * m), np.vstack([unit, -unit]), b_pre)


def fit_parts(config: BaselineConfig, x: np.ndarray) -> Parts:
    """Fit the method on processed data x [N, d] (float64) with scikit-learn."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import NMF, PCA, FastICA, MiniBatchDictionaryLearning
    from sklearn.exceptions import ConvergenceWarning

    c, seed, d = config.components, config.seed, x.shape[1]
    if config.method in ("pca", "ica", "nmf") and c > d:
        raise MsaeError(f"--components {c}: {config.method} has at most d = {d} components on this data")
    if c > len(x):
        raise MsaeError(f"--components {c}: more than the {len(x)} training rows")
    if config.method == "pca":
        pca = PCA(n_components=c, random_state=seed).fit(x)
        return _signed(pca.components_.T, pca.components_, pca.mean_)
    if config.method == "ica":
        ica = FastICA(n_components=c, whiten="unit-variance", max_iter=config.max_iter, random_state=seed).fit(x)
        return _signed(ica.components_.T, ica.mixing_.T, ica.mean_)
    if config.method == "kmeans":
        centres = KMeans(n_clusters=c, n_init=1, max_iter=config.max_iter, random_state=seed).fit(x).cluster_centers_
        unit, norms = _unit_rows(centres)
        return Parts(centres.T, -0.5 * (centres**2).sum(1), unit, np.zeros(d), gain=norms)
    if config.method == "dictionary":
        # Each minibatch's codes are a few coordinate-descent sweeps by design (the atoms move on
        # between batches), so scikit-learn's per-batch "did not converge" warnings are expected.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            learner = MiniBatchDictionaryLearning(
                n_components=c,
                alpha=config.alpha,
                batch_size=config.batch_size,
                max_iter=config.max_iter,
                fit_algorithm="cd",
                random_state=seed,
            ).fit(x)
        atoms = learner.components_
        return _signed(atoms.T, atoms, np.zeros(d))
    shift = x.min(axis=0)  # nmf: x - shift >= 0 on the training data
    model = NMF(n_components=c, init="nndsvda", max_iter=config.max_iter, random_state=seed).fit(x - shift)
    unit, _ = _unit_rows(model.components_)
    return Parts(unit.T, np.zeros(c), unit, shift)


def build_module(config: BaselineConfig, parts: Parts, mean: np.ndarray, scale: float) -> SparseAutoencoder:
    """The SAE whose maps are the fitted method's."""
    d = parts.w_dec.shape[1]
    arch = BaselineArchitecture(method=config.method, components=config.components, k=config.k)
    sae = SparseAutoencoder(
        SAEConfig(variant="baseline", d=d, n_latents=latent_count(config.method, config.components), arch=arch)
    )
    with torch.no_grad():
        sae.W_enc.copy_(torch.from_numpy(parts.w_enc))
        sae.b_enc.copy_(torch.from_numpy(parts.b_enc))
        sae.W_dec.copy_(torch.from_numpy(parts.w_dec))
        sae.b_pre.copy_(torch.from_numpy(parts.b_pre))
        if parts.gain is not None:
            sae.get_buffer("gain").copy_(torch.from_numpy(parts.gain))
    sae.set_statistics(torch.from_numpy(mean), scale)
    return sae.requires_grad_(False).eval()


def training_fvu(sae: SparseAutoencoder, x: np.ndarray, rows: int = 4096) -> float:
    """Sum |x - x_hat|^2 / sum |x - mean|^2 over the training rows, with the method's own code."""
    err, total = 0.0, 0.0
    mean = x.mean(0)
    with torch.no_grad():
        for start in range(0, len(x), rows):
            batch = torch.from_numpy(x[start : start + rows])
            err += float((sae.decode(sae.encode(batch)) - batch).double().square().sum())
            total += float(np.square(x[start : start + rows] - mean).sum())
    return err / total


def fit_baseline(config: BaselineConfig) -> dict[str, Any]:
    """`msae baseline`: fit, then write model.safetensors and config.json (the done file)."""
    from msae.runtime import configure_torch

    configure_torch()
    data = store.read_embeddings(config.embeddings, columns=[])
    x = data.embeddings.astype(np.float64)
    if len(x) < 2:
        raise MsaeError(f"{config.embeddings}: {len(x)} row(s); a baseline needs at least 2")
    mean = x.mean(axis=0)
    try:
        scale = scale_factor(float(np.square(x - mean).sum(1).mean()), x.shape[1], "rms")
    except ValueError as exc:
        raise MsaeError(f"{config.embeddings}: {exc} (all rows identical?)") from exc
    started = time.perf_counter()
    parts = fit_parts(config, (x - mean) * scale)
    sae = build_module(config, parts, mean, scale)
    seconds = time.perf_counter() - started
    final = {"fvu": training_fvu(sae, data.embeddings)}
    provenance = {key: data.meta.get(key) for key in ("model", "pretrained", "modality", "dataset", "split")}
    info = {
        "training": {key: getattr(config, key) for key in FIT_KEYS},  # no wall time: the same fit, the same file
        "data": {
            "path": str(config.embeddings),
            "sha256": file_sha256(config.embeddings),
            "rows": len(x),
            **provenance,
        },
        "final": final,
    }
    with staged_dir(config.out, CONFIG_FILE) as stage:  # an earlier run there stays whole until now
        checkpoint.save(sae, stage, info)
    return {"out": str(Path(config.out)), "n_latents": sae.config.n_latents, "seconds": seconds, **final}
