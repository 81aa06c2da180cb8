"""One SparseAutoencoder for every variant of the paper; the variant (msae.sae.variants) supplies
the activations and loss terms.

Layout follows the official code: W_enc [d, n] (a latent is a column), W_dec [n, d] (a latent is a
row), b_pre [d], b_enc [n]. Preprocessing lives inside the module, so a loaded SAE maps RAW
embeddings: x~ = (x - mean) * scale, a = (x~ - b_pre) W_enc + b_enc, x~_hat = z W_dec + b_pre,
x_hat = x~_hat / scale + mean.

Training works in the processed space through `objective`, which returns the loss of the variant
plus the tensors the loop needs for its on-device metrics. Variants whose objective is nested top-k
levels (TopK, BatchTopK, Matryoshka) train through the sparse kernels (msae.sae.sparse, k*d per
sample); the others, and every variant with `dense=True` (the reference the sparse kernels are
tested against), through the dense computation here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from msae.errors import MsaeError
from msae.sae import activations as act
from msae.sae import losses, sparse
from msae.sae.architecture import SAEConfig
from msae.sae.provenance import RunRecord
from msae.sae.sparse import Objective

INIT_DECODER_NORM = 0.1


class SparseAutoencoder(nn.Module):
    """ReLU / TopK / BatchTopK / Matryoshka / JumpReLU SAE with input normalisation inside."""

    # Buffers (registered in __init__ or by the variant) are tensors; declared for type checkers.
    mean: torch.Tensor
    scale: torch.Tensor
    threshold: torch.Tensor
    threshold_ema: torch.Tensor
    threshold_updates: torch.Tensor

    def __init__(self, config: SAEConfig) -> None:
        super().__init__()
        self.config = config
        self.kind = config.kind
        self.record: RunRecord | None = None  # set by msae.sae.load: where the model came from
        d, n = config.d, config.n_latents
        self.W_enc = nn.Parameter(torch.empty(d, n))
        self.b_enc = nn.Parameter(torch.zeros(n))
        self.W_dec = nn.Parameter(torch.empty(n, d))
        self.b_pre = nn.Parameter(torch.zeros(d))
        self.register_buffer("mean", torch.zeros(d))
        self.register_buffer("scale", torch.ones(()))
        self.kind.add_state(self)
        self.reset_parameters()

    # ----------------------------------------------------------------- initialisation
    def reset_parameters(self) -> None:
        """The official init: kaiming-uniform decoder rows rescaled to norm 0.1, encoder =
        decoder transposed (untied copy), zero biases. Draws from the global CPU torch RNG so a
        seed fixes it on every device."""
        with torch.no_grad():
            w = nn.init.kaiming_uniform_(torch.zeros(self.config.n_latents, self.config.d), nonlinearity="relu")
            w *= INIT_DECODER_NORM / w.norm(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)
            self.W_dec.copy_(w)
            self.W_enc.copy_(w.T)
            self.b_enc.zero_()
            self.b_pre.zero_()

    def set_statistics(self, mean: torch.Tensor, scale: float) -> None:
        """Store the training set's mean and scale (used by preprocess/postprocess)."""
        with torch.no_grad():
            self.mean.copy_(mean.to(self.mean))
            self.scale.fill_(float(scale))

    # ----------------------------------------------------------------- maps (raw space API)
    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) * self.scale

    def postprocess(self, y: torch.Tensor) -> torch.Tensor:
        return y / self.scale + self.mean

    def pre_activation_processed(self, x_tilde: torch.Tensor) -> torch.Tensor:
        """(x~ - b_pre) W_enc + b_enc, written as x~ W_enc + (b_enc - b_pre W_enc): the same value,
        but b_pre's gradient then costs a vector-matrix product instead of a batch-sized matmul, and
        the bias rides in the GEMM (no pass over the [B, n] result)."""
        rows = x_tilde.reshape(-1, x_tilde.shape[-1])
        a = torch.addmm(self.b_enc - self.b_pre @ self.W_enc, rows, self.W_enc)
        return a.reshape(*x_tilde.shape[:-1], a.shape[-1])

    def pre_activation(self, x: torch.Tensor) -> torch.Tensor:
        """a = (x~ - b_pre) W_enc + b_enc for RAW embeddings x [B, d] -> [B, n]."""
        return self.pre_activation_processed(self.preprocess(x))

    def activate(self, a: torch.Tensor) -> torch.Tensor:
        """The variant's batch-independent inference activation (the sparse path)."""
        return self.kind.infer(self, a)

    def encode(self, x: torch.Tensor, k: int | None = None) -> torch.Tensor:
        """Latents of RAW x. k=None: the variant's own inference activation (Matryoshka: top-k at
        the smallest level). k=int: the top-k of the dense ReLU(a) (progressive recovery)."""
        a = self.pre_activation(x)
        if k is None:
            return self.activate(a)
        return act.nested_topk(a, [k], over_batch=False)[0]

    def encode_dense(self, x: torch.Tensor) -> torch.Tensor:
        """ReLU over all latents: the path the paper's tables report."""
        return self.pre_activation(x).clamp_min(0)

    def decode_processed(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.W_dec + self.b_pre

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents [B, n] -> reconstruction in RAW embedding space [B, d]."""
        return self.postprocess(self.decode_processed(z))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """RAW x -> (RAW reconstruction, latents) on the sparse path."""
        z = self.encode(x)
        return self.decode(z), z

    def sparse_levels(self) -> list[int | None]:
        """The k of each sparse path: Matryoshka's nesting, TopK's [k], otherwise [None]."""
        return self.kind.sparse_levels(self.config.arch)

    def require_compatible(self, meta: Mapping[str, Any], where: str, modality: str | None = None) -> None:
        """Refuse a store this SAE cannot read, naming it: another width, another backbone than the
        training data (when the run records it), or another modality than the caller needs."""
        if int(meta.get("dim", -1)) != self.config.d:
            raise MsaeError(f"{where}: embeddings have dim {meta.get('dim')} but the SAE expects d={self.config.d}")
        if modality is not None and meta.get("modality") != modality:
            raise MsaeError(
                f"{where}: expected {modality} embeddings here, but the store holds modality {meta.get('modality')!r}"
            )
        if self.record is not None:
            self.record.require_same_backbone(meta, where)

    def atoms_raw_direction(self) -> torch.Tensor:
        """W_dec / scale: the raw-space direction each latent adds (before the mean)."""
        return self.W_dec / self.scale

    # ----------------------------------------------------------------- training
    def objective(self, x_tilde: torch.Tensor, dead: torch.Tensor | None = None, dense: bool = False) -> Objective:
        """Training loss of the variant on a PROCESSED batch: the weighted mean of each nested
        level's reconstruction loss (one level for most variants), plus the variant's penalty and
        the optional AuxK term on the latents marked `dead` [n] (ignored when auxk_alpha == 0).
        Updates the variant's state (BatchTopK's threshold). `dense`: the dense computation even
        where the sparse kernels apply (equal to float tolerance; tests and benchmarks)."""
        cfg = self.config
        auxk = sparse.AuxK(dead, cfg.auxk_k or 0, cfg.auxk_alpha) if cfg.auxk_alpha > 0 and dead is not None else None
        plan = None if dense else self.kind.sparse_plan(cfg.arch)
        if plan is None:
            result = self._dense_objective(x_tilde, auxk)
        else:
            params = (self.W_enc, self.b_enc, self.W_dec, self.b_pre)
            result = sparse.nested_objective(
                x_tilde, *params, plan.ks, plan.weights, plan.over_batch, cfg.loss, auxk=auxk
            )
        self.kind.update_state(self, result)
        return result

    def _dense_objective(self, x_tilde: torch.Tensor, auxk: sparse.AuxK | None) -> Objective:
        """Every level as a masked [B, n] activation decoded by a dense matmul."""
        cfg = self.config
        x_sq = losses.squared_norm(x_tilde)
        a = self.pre_activation_processed(x_tilde)
        levels = self.kind.train_levels(self, a)
        recons = [self.decode_processed(z) for z in levels]
        rec = [losses.reconstruction_loss(r, x_tilde, cfg.loss, x_sq) for r in recons]
        loss = losses.weighted_mean(rec, self.kind.level_weights(cfg.arch, len(levels)))
        penalty = self.kind.penalty(self, a, levels, x_sq)
        if penalty is not None:
            loss = loss + penalty
        if auxk is not None:
            a_dead = a.masked_fill(~auxk.dead, torch.finfo(a.dtype).min)  # finite: masked entries times 0 stay 0
            z_aux = act.nested_topk(a_dead, [auxk.k], over_batch=False)[0]
            residual = (x_tilde - recons[-1]).detach()
            loss = loss + auxk.alpha * losses.auxk_loss(z_aux @ self.W_dec, residual)
        with torch.no_grad():
            counts = (levels[-1] > 0).sum(0)
            kept_min = act.kept_minimum(levels[0])
        return Objective(loss=loss, x_hat=recons[0], latent_counts=counts, kept_min=kept_min)

    @torch.no_grad()
    def normalize_decoder_(self) -> None:
        """Decoder rows to unit norm, compensating W_enc columns, b_enc and the variant's state
        (JumpReLU's threshold) so ReLU-type outputs are unchanged, as the official code does after
        each backward. Idempotent on unit rows."""
        norms = self.W_dec.norm(dim=1).clamp_min(torch.finfo(torch.float32).eps)
        self.W_dec.div_(norms[:, None])
        self.W_enc.mul_(norms[None, :])
        self.b_enc.mul_(norms)
        self.kind.rescale(self, norms)

    @torch.no_grad()
    def project_decoder_grad_(self) -> None:
        """Remove the radial part of each decoder row's gradient (rows are unit norm here)."""
        g = self.W_dec.grad
        if g is not None:
            g.sub_((g * self.W_dec).sum(dim=1, keepdim=True) * self.W_dec)


def scale_factor(mean_sq_norm: float, d: int, mode: str) -> float:
    """Input scale s from the mean squared norm of centred data. rms (default, sound): s =
    sqrt(d) / sqrt(E||x-mu||^2), so E||x~||^2 = d. paper: the official code's s = sqrt(d) /
    E||x-mu||^2 (it divides by the squared norm; docs/paper.md)."""
    if mean_sq_norm <= 0 or not math.isfinite(mean_sq_norm):
        raise ValueError(f"the centred training data has mean squared norm {mean_sq_norm}; cannot scale it")
    if mode == "rms":
        return math.sqrt(d) / math.sqrt(mean_sq_norm)
    if mode == "paper":
        return math.sqrt(d) / mean_sq_norm
    raise ValueError(f"unknown scale mode {mode!r}")
