"""One SparseAutoencoder for every variant of the paper; the variant only picks the activation.

Layout follows the reference code (msae-reference §1.1): W_enc [d, n] (a latent is a column),
W_dec [n, d] (a latent is a row), b_pre [d], b_enc [n]. Preprocessing lives inside the module, so a
loaded SAE maps RAW embeddings: x~ = (x - mean) * scale, a = (x~ - b_pre) W_enc + b_enc,
x~_hat = z W_dec + b_pre, x_hat = x~_hat / scale + mean.

Training works in the processed space through `objective`, which returns the loss of the variant
plus the tensors the loop needs for its on-device metrics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from msae.sae import activations as act
from msae.sae import losses
from msae.sae.config import SAEConfig

INIT_DECODER_NORM = 0.1
THRESHOLD_DECAY = 0.99  # EMA of BatchTopK's per-batch minimum kept activation


@dataclass
class Objective:
    """What one training forward produces (processed space)."""

    loss: torch.Tensor  # scalar to backpropagate
    x_hat: torch.Tensor  # [B, d] the sparse reconstruction logged as fvu (Matryoshka: smallest k)
    z_tracked: torch.Tensor  # [B, n] activation counted for l0 / dead latents (Matryoshka: widest)


class SparseAutoencoder(nn.Module):
    """ReLU / TopK / BatchTopK / Matryoshka / JumpReLU SAE with input normalisation inside."""

    def __init__(self, config: SAEConfig) -> None:
        super().__init__()
        self.config = config.validate()
        d, n = config.d, config.n_latents
        self.W_enc = nn.Parameter(torch.empty(d, n))
        self.b_enc = nn.Parameter(torch.zeros(n))
        self.W_dec = nn.Parameter(torch.empty(n, d))
        self.b_pre = nn.Parameter(torch.zeros(d))
        self.register_buffer("mean", torch.zeros(d))
        self.register_buffer("scale", torch.ones(()))
        if config.variant == "batchtopk":
            self.register_buffer("threshold", torch.zeros(()))
            self.register_buffer("threshold_ema", torch.zeros(()))
            self.register_buffer("threshold_updates", torch.zeros((), dtype=torch.int64))
        if config.variant == "jumprelu":
            self.threshold = nn.Parameter(torch.full((n,), float(config.threshold_init)))
        self.reset_parameters()

    # ----------------------------------------------------------------- initialisation
    def reset_parameters(self) -> None:
        """Reference init (§1.4): kaiming-uniform decoder rows rescaled to norm 0.1, encoder =
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
        but b_pre's gradient then costs a vector-matrix product instead of a batch-sized matmul."""
        return x_tilde @ self.W_enc + (self.b_enc - self.b_pre @ self.W_enc)

    def pre_activation(self, x: torch.Tensor) -> torch.Tensor:
        """a = (x~ - b_pre) W_enc + b_enc for RAW embeddings x [B, d] -> [B, n]."""
        return self.pre_activation_processed(self.preprocess(x))

    def activate(self, a: torch.Tensor) -> torch.Tensor:
        """The variant's batch-independent inference activation (the sparse path)."""
        cfg = self.config
        if cfg.variant == "relu":
            return a.clamp_min(0)
        if cfg.variant == "topk":
            return act.nested_topk(a, [cfg.k], over_batch=False)[0]
        if cfg.variant == "matryoshka":
            return act.nested_topk(a, [cfg.nesting[0]], over_batch=False)[0]
        return act.threshold_relu(a, self.threshold.clamp_min(0))  # batchtopk, jumprelu

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
        if self.config.variant == "matryoshka":
            return list(self.config.nesting)
        if self.config.variant == "topk":
            return [self.config.k]
        return [None]

    def atoms_raw_direction(self) -> torch.Tensor:
        """W_dec / scale: the raw-space direction each latent adds (before the mean)."""
        return self.W_dec / self.scale

    # ----------------------------------------------------------------- training
    def objective(self, x_tilde: torch.Tensor, dead: torch.Tensor | None = None) -> Objective:
        """Training loss of the variant on a PROCESSED batch. `dead` [n] bool marks latents for
        the optional AuxK term (ignored when auxk_alpha == 0)."""
        cfg = self.config
        x_sq = x_tilde.float().square().sum(-1)
        a = self.pre_activation_processed(x_tilde)
        if cfg.variant == "matryoshka":
            levels = act.nested_topk(a, cfg.nesting, over_batch=cfg.inner == "batchtopk")
            recons = [self.decode_processed(z) for z in levels]
            weights = losses.matryoshka_weights(len(levels), cfg.weighting)
            rec = [losses.reconstruction_loss(r, x_tilde, cfg.loss, x_sq) for r in recons]
            loss = losses.weighted_mean(rec, weights)
            x_hat, z_tracked, x_hat_widest = recons[0], levels[-1], recons[-1]
        else:
            z = self._train_activation(a)
            x_hat = self.decode_processed(z)
            loss = losses.reconstruction_loss(x_hat, x_tilde, cfg.loss, x_sq)
            if cfg.variant == "relu" and cfg.l1:
                loss = loss + cfg.l1 * losses.normalized_l1(z, x_sq)
            if cfg.variant == "jumprelu" and cfg.l0_coef:
                loss = loss + cfg.l0_coef * act.step_count(a, self.threshold, cfg.bandwidth).mean()
            z_tracked = z
            x_hat_widest = x_hat
        if cfg.auxk_alpha > 0 and dead is not None:
            loss = loss + cfg.auxk_alpha * self._auxk_loss(a, dead, x_tilde, x_hat_widest, x_sq)
        return Objective(loss=loss, x_hat=x_hat, z_tracked=z_tracked)

    def _train_activation(self, a: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if cfg.variant == "topk":
            return act.nested_topk(a, [cfg.k], over_batch=False)[0]
        if cfg.variant == "batchtopk":
            z = act.nested_topk(a, [cfg.k], over_batch=True)[0]
            self._update_threshold(act.kept_minimum(z))
            return z
        if cfg.variant == "jumprelu":
            return act.jumprelu(a, self.threshold, cfg.bandwidth)
        return a.clamp_min(0)

    @torch.no_grad()
    def _update_threshold(self, batch_min: torch.Tensor) -> None:
        """Bias-corrected EMA of the per-batch minimum kept activation, all on device (no sync)."""
        self.threshold_ema.mul_(THRESHOLD_DECAY).add_((1 - THRESHOLD_DECAY) * batch_min)
        self.threshold_updates.add_(1)
        correction = 1 - torch.pow(THRESHOLD_DECAY, self.threshold_updates)
        self.threshold.copy_(self.threshold_ema / correction)

    def _auxk_loss(
        self, a: torch.Tensor, dead: torch.Tensor, x_tilde: torch.Tensor, x_hat: torch.Tensor, x_sq: torch.Tensor
    ) -> torch.Tensor:
        """AuxK (Gao et al. 2024): the top-k_aux dead latents reconstruct the residual the live
        ones left, which gives dead latents a gradient. Zero when nothing is dead."""
        a_dead = a.masked_fill(~dead, torch.finfo(a.dtype).min)  # finite: masked entries times 0 stay 0
        z_aux = act.nested_topk(a_dead, [self.config.auxk_k], over_batch=False)[0]
        residual = (x_tilde - x_hat).detach()
        return losses.reconstruction_loss(z_aux @ self.W_dec, residual, self.config.loss, x_sq)

    @torch.no_grad()
    def normalize_decoder_(self) -> None:
        """Decoder rows to unit norm, compensating W_enc columns, b_enc and the JumpReLU threshold
        so ReLU-type outputs are unchanged (reference §1.5). Idempotent on unit rows."""
        norms = self.W_dec.norm(dim=1).clamp_min(torch.finfo(torch.float32).eps)
        self.W_dec.div_(norms[:, None])
        self.W_enc.mul_(norms[None, :])
        self.b_enc.mul_(norms)
        if self.config.variant == "jumprelu":
            self.threshold.mul_(norms).clamp_min_(0)

    @torch.no_grad()
    def project_decoder_grad_(self) -> None:
        """Remove the radial part of each decoder row's gradient (rows are unit norm here)."""
        g = self.W_dec.grad
        if g is not None:
            g.sub_((g * self.W_dec).sum(dim=1, keepdim=True) * self.W_dec)


def scale_factor(mean_sq_norm: float, d: int, mode: str) -> float:
    """Input scale s from the mean squared norm of centred data. rms (default, sound): s =
    sqrt(d) / sqrt(E||x-mu||^2), so E||x~||^2 = d. paper: the official code's s = sqrt(d) /
    E||x-mu||^2 (it divides by the squared norm; msae-reference §1.6, trap 6)."""
    if mean_sq_norm <= 0 or not math.isfinite(mean_sq_norm):
        raise ValueError(f"the centred training data has mean squared norm {mean_sq_norm}; cannot scale it")
    if mode == "rms":
        return math.sqrt(d) / math.sqrt(mean_sq_norm)
    if mode == "paper":
        return math.sqrt(d) / mean_sq_norm
    raise ValueError(f"unknown scale mode {mode!r}")
