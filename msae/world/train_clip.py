"""`msae world train-clip`: contrastive training of the world's tiny CLIP on rendered scenes.

The model is open_clip's own CLIP (ModifiedResNet image tower, text transformer, SimpleTokenizer)
built from `msae/assets/msae-world.json`; the loss is open_clip's ClipLoss with a learnable logit
scale. Training images are rendered on the fly from a fixed set of `n_train` scenes (cheaper than
holding them in memory; drawing a batch costs a few % of a CPU step).

Two things make the image tower learn shape and not only the easy attributes (colour, background):
- hard batches: a fraction of the batches hold only a few (colour, background) groups, so the
  captions in them can be told apart only by shape, size and position;
- short captions: a fraction of captions name the shape plus a random subset of the other
  attributes, which ties single attribute words (as in zero-shot prompts) to image features.

Every batch is a pure function of (seed, step), so a resumed run sees the same data as an
uninterrupted one.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from msae.config.world import ClipTrainingConfig, ClipTrainingOptions
from msae.errors import MsaeError
from msae.world.attributes import ATTRIBUTES
from msae.world.render import scene_at
from msae.world.scene import EXTRA_STREAM_BASE, Scene, WorldParams, describe, describe_partial, draw_scene

STREAM_BATCH = EXTRA_STREAM_BASE + 1
LOG_EVERY = 10


def lr_at(step: int, cfg: ClipTrainingOptions) -> float:
    """Linear warm-up, then cosine decay to zero at the last step."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return 0.5 * cfg.lr * (1 + math.cos(math.pi * progress))


class SceneBatches:
    """Scenes of the fixed training set, grouped by (colour, background) for hard batches."""

    def __init__(self, cfg: ClipTrainingOptions, progress: bool = True) -> None:
        from tqdm import tqdm

        self.cfg = cfg
        self.params = WorldParams(image_size=cfg.image_size)
        n_bg = len(ATTRIBUTES["background"])
        color_index = {c: i for i, c in enumerate(ATTRIBUTES["color"])}
        bg_index = {b: i for i, b in enumerate(ATTRIBUTES["background"])}
        group = np.empty(cfg.n_train, dtype=np.int64)
        for i in tqdm(range(cfg.n_train), desc="index scenes", unit="scene", disable=not progress):
            scene = self.scene(i)
            group[i] = color_index[scene.objects[0].color] * n_bg + bg_index[scene.background]
        order = np.argsort(group, kind="stable")
        bounds = np.searchsorted(group[order], np.arange(len(ATTRIBUTES["color"]) * n_bg + 1))
        self.groups = [order[bounds[g] : bounds[g + 1]] for g in range(len(bounds) - 1)]
        self.groups = [g for g in self.groups if len(g)]

    def scene(self, index: int) -> Scene:
        return scene_at(self.cfg.seed, "train", index, self.params)

    def indices(self, step: int) -> np.ndarray:
        """The training-set indices of batch `step`."""
        cfg = self.cfg
        rng = np.random.default_rng([cfg.seed, STREAM_BATCH, step])
        if rng.random() >= cfg.hard_batch_rate:
            return rng.choice(cfg.n_train, cfg.batch_size, replace=False)
        chosen = rng.choice(len(self.groups), min(cfg.hard_groups, len(self.groups)), replace=False)
        pool = np.concatenate([self.groups[g] for g in chosen])
        return rng.choice(pool, cfg.batch_size, replace=len(pool) < cfg.batch_size)

    def batch(self, step: int) -> tuple[np.ndarray, list[str]]:
        """Images [B, H, W, 3] uint8 and their captions."""
        cfg = self.cfg
        rng = np.random.default_rng([cfg.seed, STREAM_BATCH + 1, step])
        side = cfg.image_size
        generic = cfg.generic_noun_rate if step >= cfg.generic_noun_from else 0.0
        images = np.empty((cfg.batch_size, side, side, 3), dtype=np.uint8)
        captions = []
        for row, index in enumerate(self.indices(step)):
            scene = self.scene(int(index))
            images[row] = np.asarray(draw_scene(scene, side))
            if rng.random() < cfg.partial_caption_rate:
                captions.append(describe_partial(scene, rng, generic))
            else:
                captions.append(describe(scene, template=int(rng.integers(4))))
        return images, captions


def replays_identically(saved: dict, cfg: ClipTrainingOptions, step: int) -> bool:
    """Whether a run with `cfg` would have reached the saved state at `step` exactly.

    Options added after a checkpoint was written take their defaults; the generic-noun captions
    may be switched on from any step >= `step`, since until then no batch depends on them.
    """
    old = {**ClipTrainingOptions.model_construct().weight_parameters(), **saved}
    new = cfg.weight_parameters()
    phase = ("generic_noun_rate", "generic_noun_from")
    same = all(old.get(k) == new[k] for k in new if k not in phase)

    def generic_before(c: dict) -> bool:
        return c["generic_noun_rate"] > 0 and c["generic_noun_from"] < step

    if generic_before(old) or generic_before(new):
        return same and all(old.get(k) == new[k] for k in phase)
    return same


def image_normalizer(model: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of the model's own preprocessing, so training matches open_clip's transform."""
    pp = model.visual.preprocess_cfg
    return torch.tensor(pp["mean"]).view(1, 3, 1, 1), torch.tensor(pp["std"]).view(1, 3, 1, 1)


def to_model_input(images: np.ndarray, mean: torch.Tensor, std: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 HWC images -> normalised NCHW floats (= open_clip's ToTensor + Normalize at native size)."""
    x = torch.from_numpy(images).to(device).permute(0, 3, 1, 2).float().div_(255.0)
    x = (x - mean.to(device)) / std.to(device)
    return x.contiguous(memory_format=torch.channels_last)


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    # open_clip's convention: no decay on gains, biases, norms and the logit scale.
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, param in model.named_parameters():
        exclude = param.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name
        (no_decay if exclude else decay).append(param)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


def _make_optimizer(model: torch.nn.Module, cfg: ClipTrainingOptions, device: torch.device) -> torch.optim.Optimizer:
    groups = _param_groups(model, cfg.weight_decay)
    try:  # the fused kernel is ~3x faster on CPU (the token table is most of the parameters)
        return torch.optim.AdamW(groups, lr=cfg.lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=cfg.lr)


def checkpoint_dir(out: Path) -> Path:
    return out.parent / f"{out.stem}.checkpoints"


def save_fp16(model: torch.nn.Module, path: Path, metadata: dict[str, str]) -> None:
    """Weights as fp16 safetensors (what open_clip loads with pretrained=<path>)."""
    from safetensors.torch import save_file

    from msae.io import atomic_path

    state = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)


def _save_state(
    state_path: Path,
    cfg: ClipTrainingConfig,
    done: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    log: list[dict],
    elapsed: float,
) -> None:
    """A resumable checkpoint (plain tensors and values: it loads with weights_only=True)."""
    from msae.io import atomic_path

    with atomic_path(state_path) as tmp:
        torch.save(
            {
                "config": cfg.weight_parameters(),
                "step": done,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "log": log,
                "elapsed_s": elapsed,
            },
            tmp,
        )


def _restore(
    state_path: Path,
    cfg: ClipTrainingConfig,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
) -> tuple[int, list[dict], float]:
    """(step, log, elapsed seconds) of the checkpoint, loaded into model and optimiser; no pickle code
    runs (weights_only), and a foreign or truncated file is refused by name."""
    try:
        state = torch.load(state_path, map_location=device, weights_only=True)
    except Exception as exc:  # pickle refusals, truncation and foreign formats all land here
        raise MsaeError(f"--resume: {state_path} is not a training checkpoint msae can read safely ({exc})") from exc
    kinds: dict[str, type | tuple[type, ...]] = {
        "config": dict,
        "step": int,
        "model": dict,
        "optimizer": dict,
        "log": list,
        "elapsed_s": (int, float),
    }
    wrong = [k for k, kind in kinds.items() if not isinstance(state, dict) or not isinstance(state.get(k), kind)]
    if wrong:
        raise MsaeError(f"--resume: {state_path} is not a world-CLIP training checkpoint (no valid {', '.join(wrong)})")
    try:
        same = replays_identically(state["config"], cfg, state["step"])
    except (TypeError, KeyError):
        same = False
    if not same:
        raise MsaeError(f"--resume: {state_path} was trained with {state['config']}, not these parameters")
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise MsaeError(
            f"--resume: {state_path} does not fit the world CLIP ({' '.join(str(exc).split())[:240]})"
        ) from exc
    return state["step"], state["log"], state["elapsed_s"]


def _log_entry(
    step: int,
    cfg: ClipTrainingOptions,
    loss: torch.Tensor,
    img: torch.Tensor,
    txt: torch.Tensor,
    model: Any,
    rate: float,
    elapsed: float,
) -> dict:
    with torch.no_grad():
        acc = (img @ txt.T).argmax(1).eq(torch.arange(len(img), device=img.device)).float().mean().item()
    return {
        "step": step + 1,
        "loss": round(loss.item(), 5),
        "batch_i2t_acc": round(acc, 4),
        "lr": lr_at(step, cfg),
        "logit_scale": round(model.logit_scale.exp().item(), 3),
        "samples_per_s": round(rate, 1),
        "elapsed_s": round(elapsed, 1),
    }


def train_clip(cfg: ClipTrainingConfig, progress: bool = True) -> Path | None:
    """Train the world CLIP and write fp16 safetensors to `cfg.out`; return it.

    `stop_after` ends the run early at that step with a resumable checkpoint (returns None), for
    time-limited sessions; `resume` later continues exactly where it stopped.
    """
    import json

    import open_clip
    from tqdm import tqdm

    from msae.io import write_json_atomic
    from msae.runtime import configure_torch, resolve_device, seed_everything
    from msae.world.clip import WORLD_MODEL, register_world_model

    out = cfg.out
    configure_torch()
    dev = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    register_world_model()
    model = open_clip.create_model(WORLD_MODEL, device=dev)
    model.visual.to(memory_format=torch.channels_last)
    tokenizer = open_clip.get_tokenizer(WORLD_MODEL)
    optimizer = _make_optimizer(model, cfg, dev)
    loss_fn = open_clip.ClipLoss()
    mean, std = image_normalizer(model)

    ckdir = checkpoint_dir(out)
    state_path = ckdir / "state.pt"
    start, elapsed = 0, 0.0
    log: list[dict] = []
    if cfg.resume and state_path.exists():
        start, log, elapsed = _restore(state_path, cfg, model, optimizer, dev)
    data = SceneBatches(cfg, progress=progress)

    model.train()
    t_start = time.time() - elapsed
    bar = tqdm(
        range(start, cfg.steps), initial=start, total=cfg.steps, desc="train-clip", unit="step", disable=not progress
    )
    window_t, window_n = time.time(), 0
    weights_json = json.dumps(cfg.weight_parameters())
    for step in bar:
        images, captions = data.batch(step)
        x = to_model_input(images, mean, std, dev)
        tokens = tokenizer(captions).to(dev)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            img = model.encode_image(x, normalize=True)
            txt = model.encode_text(tokens, normalize=True)
            loss = loss_fn(img.float(), txt.float(), model.logit_scale.exp())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        window_n += cfg.batch_size
        done = step + 1
        if done % LOG_EVERY == 0 or done == cfg.steps:
            rate = window_n / max(1e-9, time.time() - window_t)
            window_t, window_n = time.time(), 0
            entry = _log_entry(step, cfg, loss, img, txt, model, rate, time.time() - t_start)
            log.append(entry)
            bar.set_postfix(loss=entry["loss"], acc=entry["batch_i2t_acc"], sps=entry["samples_per_s"])
            if not progress:
                print(json.dumps(entry), file=sys.stderr, flush=True)
        stopping = cfg.stop_after is not None and cfg.stop_after <= done < cfg.steps
        if done % cfg.checkpoint_every == 0 or done == cfg.steps or stopping:
            save_fp16(model, ckdir / f"step{done:06d}.safetensors", {"step": str(done), "train_config": weights_json})
            _save_state(state_path, cfg, done, model, optimizer, log, time.time() - t_start)
        if stopping:
            bar.close()
            return None
    bar.close()
    wall = time.time() - t_start
    metadata = {
        "train_config": weights_json,
        "wall_time_s": f"{wall:.1f}",
        "samples_seen": str(cfg.steps * cfg.batch_size),
        "device": str(dev),
    }
    save_fp16(model, out, metadata)
    write_json_atomic(ckdir / "train_log.json", {"config": cfg.weight_parameters(), "wall_time_s": wall, "log": log})
    return out
