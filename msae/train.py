"""The SAE training loop, resumable and deterministic for a seed.

Per step (the official order, docs/paper.md): forward on a processed batch -> backward -> decoder
rows to unit norm (encoder compensated) -> radial decoder gradient removed -> global grad norm
clipped -> AdamW (0.9, 0.999, eps 6.25e-10, no weight decay) -> decoder rows renormalised again, so
every saved decoder row has exactly unit norm (the official code leaves Adam's small drift in
place). Metrics are accumulated on the device and read back only at log points.

LR schedule: flat, then linear decay over the last `decay_fraction` of training. Default unit
"step": factor min(1, (T - t) / (f T)) per step t of T, which falls smoothly to 1/(f T) at the
last step. Unit "epoch" is the official per-epoch LinearDecayLR (factor (E - e) / (f E) from epoch
int((1 - f) E)), clamped at 1 (the official form exceeds 1 when (1 - f) E is not an integer).
Optional linear warmup multiplies either form.

Checkpoints: at the end of every epoch OUT/checkpoint/state.pt holds model, optimiser, tracker,
log rows, RNG and step; `resume` continues from it and reproduces the uninterrupted run.
Outputs: model.safetensors, train_log.csv, then config.json (the done file), moved into OUT
together once training is complete (msae.io.staged_dir): until then a previous run in OUT stays
whole, and the growing log lives in OUT/checkpoint/ beside the resumable state.
"""

from __future__ import annotations

import csv
import io
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from msae.config.train import TrainCommon
from msae.errors import MsaeError
from msae.io import file_sha256, staged_dir, write_text_atomic
from msae.layout import CHECKPOINT_DIR, CONFIG_FILE, TRAIN_LOG_FILE, TRAINING_STATE_FILE
from msae.runtime import configure_torch, resolve_device, seed_everything
from msae.sae import checkpoint
from msae.sae.architecture import SAEConfig
from msae.sae.data import TrainingData
from msae.sae.model import SparseAutoencoder, scale_factor
from msae.sae.sparse import Objective
from msae.sae.tracking import LOG_COLUMNS, MetricsTracker

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 6.25e-10


def lr_factor(step: int, epoch: int, steps_per_epoch: int, cfg: TrainCommon) -> float:
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
    """One optimisation step in the official order, plus a final renormalisation so the
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


def _fingerprint(sae: SAEConfig, train: TrainCommon, data_sha256: str, placement: str) -> dict[str, Any]:
    """Everything that must match for a resume to continue the same run (the resolved data
    placement too: device-resident and streamed epochs visit rows in different orders)."""
    params = {k: v for k, v in train.training().items() if k != "keep_checkpoint"}
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


@dataclass
class _Session:
    """Everything one training run holds while it runs (model, optimiser, data, bookkeeping)."""

    config: TrainCommon
    sae_config: SAEConfig
    data: TrainingData
    model: SparseAutoencoder
    optimizer: torch.optim.Optimizer
    tracker: MetricsTracker
    fingerprint: dict[str, Any]
    sha256: str
    device: torch.device
    log_rows: list[dict[str, float]]
    lr: float  # the peak learning rate (--lr, or the --lr-rule's for this run)
    step: int = 0
    start_epoch: int = 0

    @property
    def state_path(self) -> Path:
        return self.config.out / CHECKPOINT_DIR / TRAINING_STATE_FILE


def _open_session(config: TrainCommon) -> _Session:
    """Read the data and its statistics, build the model and optimiser (restored on resume)."""
    device = resolve_device(config.device)
    configure_torch()
    data = TrainingData(config.embeddings, config.batch_size, device, config.data_placement, config.seed)
    sae_config = config.architecture(data.dim)
    sha = file_sha256(config.embeddings)
    fingerprint = _fingerprint(sae_config, config, sha, data.placement)
    state_path = config.out / CHECKPOINT_DIR / TRAINING_STATE_FILE
    saved = _load_compatible_state(state_path, fingerprint) if config.resume else None

    moments = data.stats()
    try:
        scale = scale_factor(moments.mean_sq_centred_norm(), data.dim, sae_config.scale_mode)
    except ValueError as exc:
        raise MsaeError(f"{config.embeddings}: {exc} (all rows identical?)") from exc
    mean = torch.from_numpy(moments.mean()).float()
    data.normalise_with(mean, scale)

    lr = config.learning_rate(sae_config.n_latents, config.epochs * data.steps_per_epoch)
    seed_everything(config.seed)
    model = SparseAutoencoder(sae_config)
    model.set_statistics(mean, scale)
    model.to(device).train()
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=lr,
        betas=ADAM_BETAS,
        eps=ADAM_EPS,
        weight_decay=0.0,
        fused=device.type == "cuda",
    )
    tracker = MetricsTracker(sae_config.n_latents, config.dead_window, device, sae_config.auxk_alpha > 0)
    session = _Session(config, sae_config, data, model, optimizer, tracker, fingerprint, sha, device, [], lr)
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        tracker.load_state_dict(saved["tracker"])
        torch.set_rng_state(saved["rng"])
        session.log_rows, session.step, session.start_epoch = (
            list(saved["log"]),
            int(saved["step"]),
            int(saved["epoch"]),
        )
    return session


def _save_epoch(s: _Session, epoch: int) -> None:
    """The log so far and a resumable checkpoint at the end of an epoch."""
    write_text_atomic(s.state_path.parent / TRAIN_LOG_FILE, _log_csv(s.log_rows))
    checkpoint.save_training_state(
        s.state_path,
        {
            "fingerprint": s.fingerprint,
            "model": s.model.state_dict(),
            "optimizer": s.optimizer.state_dict(),
            "tracker": s.tracker.state_dict(),
            "rng": torch.get_rng_state(),
            "log": s.log_rows,
            "step": s.step,
            "epoch": epoch + 1,
        },
    )


def _run_epochs(s: _Session, progress: bool) -> None:
    """The training loop from the session's step to the end, checkpointing every epoch."""
    cfg, data = s.config, s.data
    steps_per_epoch = data.steps_per_epoch
    total_steps = cfg.epochs * steps_per_epoch
    bar = tqdm(
        total=cfg.epochs * data.rows,
        initial=s.start_epoch * data.rows,
        unit="sample",
        unit_scale=True,
        desc=f"train {s.sae_config.variant}",
        disable=not progress,
        dynamic_ncols=True,
    )
    for epoch in range(s.start_epoch, cfg.epochs):
        for x in data.batches(epoch):
            lr = s.lr * lr_factor(s.step, epoch, steps_per_epoch, cfg)
            for group in s.optimizer.param_groups:
                group["lr"] = lr
            dead = s.tracker.dead_mask(s.step, cfg.auxk_dead_steps)
            result = training_step(s.model, s.optimizer, x, dead, cfg.grad_clip, cfg.bf16)
            s.tracker.update(s.step, result.loss, x, result.x_hat, result.latent_counts)
            s.step += 1
            if s.step % cfg.log_every == 0 or s.step == total_steps:
                row = s.tracker.log_row(s.step, epoch, lr)
                s.log_rows.append(row)
                bar.set_postfix(
                    loss=f"{row['loss']:.4g}", fvu=f"{row['fvu']:.3g}", active=f"{row['active']:.1f}", refresh=False
                )
            bar.update(len(x))
        _save_epoch(s, epoch)
    bar.close()


def train_sae(config: TrainCommon, progress: bool = True) -> TrainResult:
    """Train one SAE on an embedding store and write its checkpoint directory `config.out`."""
    session = _open_session(config)
    started = time.perf_counter()
    _run_epochs(session, progress)
    seconds = time.perf_counter() - started
    final = dict(session.log_rows[-1]) if session.log_rows else {}
    info = {
        "training": {**config.training(), "lr": session.lr, "device": str(session.device), "steps": session.step},
        "data": _provenance(session.data, session.sha256),
        "final_dead_latents": session.tracker.final_dead_latents(),
        "final": final,
    }
    session.model.eval()
    with staged_dir(config.out, CONFIG_FILE) as stage:
        write_text_atomic(stage / TRAIN_LOG_FILE, _log_csv(session.log_rows))
        checkpoint.save(session.model, stage, info)
    if not config.keep_checkpoint:
        shutil.rmtree(config.out / CHECKPOINT_DIR, ignore_errors=True)
    return TrainResult(out=config.out, steps=session.step, seconds=seconds, final=final)


__all__ = ["TrainResult", "lr_factor", "train_sae", "training_step"]
