"""The SAE training loop (msae-reference §1.5 and §3), resumable and deterministic for a seed.

Per step: forward on a processed batch -> backward -> decoder rows to unit norm (encoder
compensated) -> radial decoder gradient removed -> global grad norm clipped at 1.0 -> AdamW
(0.9, 0.999, eps 6.25e-10, no weight decay) -> decoder rows renormalised again, so every saved
decoder row has exactly unit norm (the reference leaves Adam's small drift in place). Metrics are
accumulated on the device and read back only at log points.

LR schedule: flat, then linear decay over the last 20% of training. Default unit "step": factor
min(1, (T - t) / (0.2 T)) per step t of T, which falls smoothly to 1/(0.2 T) at the last step.
Unit "epoch" is the reference's per-epoch LinearDecayLR (factor (E - e) / (0.2 E) from epoch
int(0.8 E)), clamped at 1 (the reference exceeds 1 when 0.8 E is not an integer). Optional linear
warmup multiplies either form.

Checkpoints: at the end of every epoch OUT/checkpoint/state.pt holds model, optimiser, tracker,
log rows, RNG and step; `resume=True` continues from it and reproduces the uninterrupted run.
Outputs: model.safetensors, train_log.csv, then config.json (the done file).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from msae.errors import MsaeError
from msae.io import file_sha256, write_text_atomic
from msae.runtime import configure_torch, resolve_device, seed_everything
from msae.sae import checkpoint
from msae.sae.config import SAEConfig
from msae.sae.data import PLACEMENTS, TrainingData
from msae.sae.model import Objective, SparseAutoencoder, scale_factor
from msae.sae.tracking import LOG_COLUMNS, MetricsTracker

DEFAULT_LR = {"relu": 5e-5, "topk": 5e-4, "batchtopk": 5e-4, "matryoshka": 1e-4, "jumprelu": 5e-4}
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 6.25e-10
SCHEDULE_UNITS = ("step", "epoch")
CHECKPOINT_DIR = "checkpoint"
LOG_FILE = "train_log.csv"


@dataclass
class TrainConfig:
    """Training parameters; all of them except `keep_checkpoint` must match for a resume."""

    epochs: int = 30
    batch_size: int = 4096
    lr: float | None = None  # None: the paper's LR for the variant (DEFAULT_LR)
    warmup_steps: int = 0
    lr_schedule: str = "step"
    decay_fraction: float = 0.2
    grad_clip: float = 1.0
    seed: int = 42
    bf16: bool = False
    log_every: int = 100
    dead_window: int = 1000
    auxk_dead_steps: int = 1000
    data_placement: str = "auto"
    keep_checkpoint: bool = False

    def validate(self) -> TrainConfig:
        checks = [
            (self.epochs >= 1, f"--epochs {self.epochs}: must be >= 1"),
            (self.batch_size >= 1, f"--batch-size {self.batch_size}: must be >= 1"),
            (self.lr is None or self.lr > 0, f"--lr {self.lr}: must be > 0"),
            (self.warmup_steps >= 0, f"--warmup-steps {self.warmup_steps}: must be >= 0"),
            (self.lr_schedule in SCHEDULE_UNITS, f"--lr-schedule {self.lr_schedule!r}: choose from {', '.join(SCHEDULE_UNITS)}"),
            (0 < self.decay_fraction <= 1, f"--decay-fraction {self.decay_fraction}: must be in (0, 1]"),
            (self.grad_clip > 0, f"--grad-clip {self.grad_clip}: must be > 0"),
            (self.log_every >= 1, f"--log-every {self.log_every}: must be >= 1"),
            (self.dead_window >= 1, f"--dead-window {self.dead_window}: must be >= 1"),
            (self.auxk_dead_steps >= 1, f"--auxk-dead-steps {self.auxk_dead_steps}: must be >= 1"),
            (self.data_placement in PLACEMENTS, f"--data-placement {self.data_placement!r}: choose from {', '.join(PLACEMENTS)}"),
        ]
        for ok, message in checks:
            if not ok:
                raise MsaeError(message)
        return self


def lr_factor(step: int, epoch: int, steps_per_epoch: int, cfg: TrainConfig) -> float:
    """Multiplier of the base LR at 0-based `step` (in `epoch`): warmup x flat-then-linear decay."""
    if cfg.lr_schedule == "step":
        position, total = step, cfg.epochs * steps_per_epoch
    else:
        position, total = epoch, cfg.epochs
    decay = min(1.0, (total - position) / (cfg.decay_fraction * total))
    warmup = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
    return warmup * decay


def training_step(
    model: SparseAutoencoder,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    dead: torch.Tensor | None = None,
    grad_clip: float = 1.0,
    bf16: bool = False,
) -> Objective:
    """One optimisation step in the reference's order (§1.5), plus a final renormalisation so the
    decoder rows are exactly unit norm after every step. No host sync."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        result = model.objective(x, dead)
    optimizer.zero_grad(set_to_none=True)
    result.loss.backward()
    model.normalize_decoder_()
    model.project_decoder_grad_()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    model.normalize_decoder_()
    return result


def _fingerprint(sae: SAEConfig, train: TrainConfig, data_sha256: str, placement: str) -> dict[str, Any]:
    """Everything that must match for a resume to continue the same run (the resolved data
    placement too: device-resident and streamed epochs visit rows in different orders)."""
    params = {k: v for k, v in dataclasses.asdict(train).items() if k != "keep_checkpoint"}
    params["data_placement"] = placement
    return {"sae": sae.to_dict(), "train": params, "data_sha256": data_sha256}


def _load_compatible_state(state_path: Path, fingerprint: dict[str, Any]) -> dict[str, Any]:
    if not state_path.exists():
        raise MsaeError(f"--resume: no training checkpoint at {state_path}")
    saved = checkpoint.load_training_state(state_path)
    diffs = _incompatibility(saved.get("fingerprint", {}), fingerprint)
    if diffs:
        raise MsaeError(f"--resume: {state_path} is incompatible with this run: " + "; ".join(diffs))
    return saved


def _incompatibility(saved: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    diffs = []
    if saved.get("data_sha256") != wanted["data_sha256"]:
        diffs.append("the training data differs (sha256 of the embedding file changed)")
    for part in ("sae", "train"):
        old, new = saved.get(part, {}), wanted[part]
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                diffs.append(f"{key}: checkpoint has {old.get(key)!r}, this run asks {new.get(key)!r}")
    return diffs


def _log_csv(rows: list[dict[str, float]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=LOG_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _provenance(data: TrainingData, sha256: str) -> dict[str, Any]:
    """The training data as config.json records it: path, content hash, backbone meta."""
    meta = {key: data.meta.get(key) for key in ("model", "pretrained", "modality", "dataset", "split")}
    return {"path": str(data.path), "sha256": sha256, "rows": data.rows, "placement": data.placement, **meta}


@dataclass
class TrainResult:
    out: Path
    steps: int
    seconds: float
    final: dict[str, float]


def train_sae(
    embeddings: str | os.PathLike[str],
    out: str | os.PathLike[str],
    sae_config: SAEConfig,
    train_config: TrainConfig,
    device: str = "auto",
    resume: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Train one SAE on an embedding store and write its checkpoint directory `out`."""
    sae_config.validate()
    train_config.validate()
    embeddings, out = Path(embeddings), Path(out)
    torch_device = resolve_device(device)
    configure_torch()
    data = TrainingData(embeddings, train_config.batch_size, torch_device, train_config.data_placement, train_config.seed)
    if data.dim != sae_config.d:
        raise MsaeError(f"{embeddings}: embeddings have dim {data.dim}, but the SAE expects d={sae_config.d}")
    sha = file_sha256(embeddings)
    fingerprint = _fingerprint(sae_config, train_config, sha, data.placement)
    state_path = out / CHECKPOINT_DIR / checkpoint.TRAINING_STATE_FILE
    saved = _load_compatible_state(state_path, fingerprint) if resume else None
    (out / checkpoint.CONFIG_FILE).unlink(missing_ok=True)  # the done file must never describe stale tensors

    moments = data.stats()
    try:
        scale = scale_factor(moments.mean_sq_centred_norm(), data.dim, sae_config.scale_mode)
    except ValueError as exc:
        raise MsaeError(f"{embeddings}: {exc} (all rows identical?)") from exc
    mean = torch.from_numpy(moments.mean()).float()
    data.normalise_with(mean, scale)

    seed_everything(train_config.seed)
    model = SparseAutoencoder(sae_config)
    model.set_statistics(mean, scale)
    model.to(torch_device).train()
    base_lr = train_config.lr if train_config.lr is not None else DEFAULT_LR[sae_config.variant]
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=base_lr, betas=ADAM_BETAS, eps=ADAM_EPS, weight_decay=0.0, fused=torch_device.type == "cuda"
    )
    tracker = MetricsTracker(sae_config.n_latents, train_config.dead_window, torch_device, sae_config.auxk_alpha > 0)
    log_rows: list[dict[str, float]] = []
    step, start_epoch = 0, 0
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        tracker.load_state_dict(saved["tracker"])
        torch.set_rng_state(saved["rng"])
        log_rows, step, start_epoch = list(saved["log"]), int(saved["step"]), int(saved["epoch"])

    steps_per_epoch = data.steps_per_epoch
    total_steps = train_config.epochs * steps_per_epoch
    bar = tqdm(
        total=train_config.epochs * data.rows,
        initial=start_epoch * data.rows,
        unit="sample",
        unit_scale=True,
        desc=f"train {sae_config.variant}",
        disable=not progress,
        dynamic_ncols=True,
    )
    started = time.perf_counter()
    for epoch in range(start_epoch, train_config.epochs):
        for x in data.batches(epoch):
            lr = base_lr * lr_factor(step, epoch, steps_per_epoch, train_config)
            for group in optimizer.param_groups:
                group["lr"] = lr
            dead = tracker.dead_mask(step, train_config.auxk_dead_steps)
            result = training_step(model, optimizer, x, dead, train_config.grad_clip, train_config.bf16)
            tracker.update(step, result.loss, x, result.x_hat, result.z_tracked)
            step += 1
            if step % train_config.log_every == 0 or step == total_steps:
                row = tracker.log_row(step, epoch, lr)
                log_rows.append(row)
                bar.set_postfix(loss=f"{row['loss']:.4g}", fvu=f"{row['fvu']:.3g}", l0=f"{row['l0']:.1f}", refresh=False)
            bar.update(len(x))
        write_text_atomic(out / LOG_FILE, _log_csv(log_rows))
        checkpoint.save_training_state(state_path, {
            "fingerprint": fingerprint,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "tracker": tracker.state_dict(),
            "rng": torch.get_rng_state(),
            "log": log_rows,
            "step": step,
            "epoch": epoch + 1,
        })
    bar.close()
    seconds = time.perf_counter() - started

    final = dict(log_rows[-1]) if log_rows else {}
    info = {
        "training": {**dataclasses.asdict(train_config), "lr": base_lr, "device": str(torch_device), "steps": step},
        "data": _provenance(data, sha),
        "final_dead_latents": tracker.final_dead_latents(),
        "final": final,
    }
    model.eval()
    checkpoint.save(model, out, info)
    if not train_config.keep_checkpoint:
        shutil.rmtree(out / CHECKPOINT_DIR, ignore_errors=True)
    return TrainResult(out=out, steps=step, seconds=seconds, final=final)


__all__ = ["DEFAULT_LR", "TrainConfig", "TrainResult", "lr_factor", "train_sae", "training_step"]
