"""The coders of the classic methods, from the SAE pre-activation a = (x~ - b_pre) W_enc + b_enc.

Each is the library's own algorithm (scikit-learn's OMP, scipy's NNLS), fed in Gram form: the
correlations of the input with the atoms are the pre-activation itself, so the coder needs no other
view of the input (msae.baselines.variant explains each method's maps).
"""

from __future__ import annotations

from typing import cast

import numpy as np
import torch

from msae.baselines.variant import BaselineArchitecture
from msae.sae.model import SparseAutoencoder


def _split(codes: torch.Tensor) -> torch.Tensor:
    """Signed codes [B, m] -> [relu(c), relu(-c)] on the +/- atoms [B, 2m]."""
    return torch.cat([codes.clamp_min(0), (-codes).clamp_min(0)], dim=1)


def _gram(module: SparseAutoencoder, m: int) -> np.ndarray:
    atoms = module.W_dec[:m].detach().double().cpu().numpy()
    return atoms @ atoms.T


def omp_codes(module: SparseAutoencoder, a: torch.Tensor, k: int) -> torch.Tensor:
    """Orthogonal matching pursuit with k atoms (scikit-learn, Gram form) on the first half of
    the +/- dictionary; a[:, :m] holds the correlations x~ . d_j."""
    from sklearn.linear_model import orthogonal_mp_gram

    m = module.config.n_latents // 2
    xy = a[:, :m].detach().double().cpu().numpy()
    codes = orthogonal_mp_gram(_gram(module, m), xy.T, n_nonzero_coefs=k).reshape(m, -1).T
    return _split(torch.from_numpy(np.ascontiguousarray(codes)).to(a))


def nnls_codes(module: SparseAutoencoder, a: torch.Tensor) -> torch.Tensor:
    """argmin_{w >= 0} |x' - w H|^2 per sample from a = x' H^T (H: unit NMF atoms) with scipy's
    NNLS on the Cholesky factor R of G = H H^T: |R w - R^-T a|^2 equals the objective up to a
    constant, so the minimiser is the same."""
    from scipy.linalg import cholesky, solve_triangular
    from scipy.optimize import nnls

    n = module.config.n_latents
    gram = _gram(module, n)
    ridge = 1e-12 * np.trace(gram)  # dependent atoms: a unique minimiser within float precision
    r = cholesky(gram + ridge * np.eye(n), lower=False)
    targets = solve_triangular(r, a.detach().double().cpu().numpy().T, trans="T", lower=False)
    codes = np.stack([nnls(r, targets[:, i])[0] for i in range(targets.shape[1])]) if len(a) else np.zeros((0, n))
    return torch.from_numpy(codes).to(a)


def encode(module: SparseAutoencoder, a: torch.Tensor) -> torch.Tensor:
    """The method's own code of pre-activations a [B, n] (the model's sparse path)."""
    arch = cast(BaselineArchitecture, module.config.arch)
    if arch.method in ("pca", "ica"):
        return a.clamp_min(0)
    if arch.method == "kmeans":
        nearest = a.argmax(dim=1, keepdim=True)
        return torch.zeros_like(a).scatter_(1, nearest, module.get_buffer("gain")[nearest].to(a))
    if arch.method == "dictionary":
        assert arch.k is not None  # msae baseline requires it
        return omp_codes(module, a, arch.k)
    return nnls_codes(module, a)
