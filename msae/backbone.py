"""CLIP backbones through open_clip: load a model and encode images and texts in batches.

A backbone is named as in the embedding store: `--model NAME --pretrained TAG_OR_PATH`. The
pretrained value is an open_clip tag (downloaded by open_clip where there is internet), a local
checkpoint file (.safetensors, .pt, .pth, .bin), or `builtin` for the world CLIP shipped in
msae/assets. Embeddings come back raw (not L2-normalised), as the store keeps them.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from msae.errors import MsaeError
from msae.runtime import resolve_device
from msae.world import clip as world_clip

CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")
LIST_HINT = 'list them with: python -c "import open_clip; print(open_clip.list_pretrained())"'


@dataclass(frozen=True)
class SplitPreprocess:
    """open_clip's eval transform cut at its ToTensor step, for the data path.

    `prepare` runs in the DataLoader workers: the PIL steps (resize, crop, RGB) and a uint8
    [3, H, W] tensor, a quarter of the float bytes to pass between processes. `finish` runs once
    per batch on the model's device: the /255 and Normalize of ToTensor and Normalize, the same
    float32 operations in the same order, so the pixels are bit-identical to `preprocess(img)`.
    A transform of another shape is run whole in `prepare` and `finish` is the identity."""

    pil_steps: Callable
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None

    def prepare(self, image: Image.Image) -> torch.Tensor:
        if self.mean is None:
            return self.pil_steps(image)
        array = np.asarray(self.pil_steps(image), dtype=np.uint8)
        return torch.from_numpy(array.copy()).permute(2, 0, 1)

    def finish(self, batch: torch.Tensor) -> torch.Tensor:
        if self.mean is None:
            return batch
        mean = torch.tensor(self.mean, dtype=torch.float32, device=batch.device).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32, device=batch.device).view(-1, 1, 1)
        return batch.to(torch.float32).div_(255).sub_(mean).div_(std)  # in place: one allocation


def split_preprocess(preprocess: Callable) -> SplitPreprocess:
    """Cut a torchvision Compose [PIL steps..., ToTensor, Normalize] for the data path."""
    from torchvision import transforms as T

    steps = list(getattr(preprocess, "transforms", []))
    cut = next((k for k, step in enumerate(steps) if isinstance(step, T.ToTensor)), None)
    tail = steps[cut + 1 :] if cut is not None else []
    if cut is None or len(tail) != 1 or not isinstance(tail[0], T.Normalize):
        return SplitPreprocess(preprocess, None, None)
    return SplitPreprocess(T.Compose(steps[:cut]), tuple(map(float, tail[0].mean)), tuple(map(float, tail[0].std)))


@dataclass
class Backbone:
    """An open_clip model in eval mode on its device, with its image transform and tokenizer."""

    model: Any  # open_clip's CLIP (its encode_* methods are not typed)
    preprocess: Callable  # PIL image -> [3, H, W] float tensor (open_clip's eval transform)
    tokenizer: Callable[[Sequence[str]], torch.Tensor]
    device: torch.device
    name: str
    pretrained: str
    dim: int

    @property
    def data_path(self) -> SplitPreprocess:
        return split_preprocess(self.preprocess)

    def _autocast(self) -> contextlib.AbstractContextManager:
        # fp16 on CUDA halves time and memory; CPU stays fp32 (CPU fp16 is slow and inexact).
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    @torch.no_grad()
    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] preprocessed pixels -> [B, d] float32 raw image embeddings on the CPU."""
        pixels = pixels.to(self.device, non_blocking=True)
        with self._autocast():
            out = self.model.encode_image(pixels)
        return out.float().cpu()

    def encode_prepared(self, batch: torch.Tensor, data_path: SplitPreprocess) -> torch.Tensor:
        """Embeddings of a batch of `data_path.prepare` outputs (finished on the device)."""
        return self.encode_images(data_path.finish(batch.to(self.device, non_blocking=True)))

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """Texts -> [B, d] float32 raw text embeddings on the CPU (tokenised by the model's own
        tokenizer; text longer than its context is truncated, as open_clip does)."""
        tokens = self.tokenizer(list(texts)).to(self.device, non_blocking=True)
        with self._autocast():
            out = self.model.encode_text(tokens)
        return out.float().cpu()


def _check_model_name(name: str) -> None:
    import open_clip

    if name.startswith(("hf-hub:", "local-dir:")) or name in open_clip.list_models():
        return
    close = difflib.get_close_matches(name, open_clip.list_models(), n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise MsaeError(f"--model {name}: unknown open_clip model name.{hint} Valid names and tags: {LIST_HINT}")


def resolve_pretrained(name: str, pretrained: str | None) -> str | None:
    """The value handed to open_clip: `builtin` becomes the shipped world weights, a path must
    exist, a tag must be known to open_clip for this model. None means random initialisation
    (tests and benchmarks only; the CLI always names weights)."""
    if pretrained is None or name.startswith(("hf-hub:", "local-dir:")):
        return pretrained
    if pretrained == world_clip.BUILTIN_TAG:
        if name != world_clip.WORLD_MODEL:
            raise MsaeError(f"--pretrained builtin exists only for --model {world_clip.WORLD_MODEL}, not {name}")
        path = world_clip.builtin_weights_path()
        if not path.is_file():
            raise MsaeError(f"{path}: the world CLIP weights are missing; train them with `msae world train-clip`")
        return str(path)
    as_path = Path(pretrained).expanduser()
    if as_path.is_file():
        return str(as_path)
    if as_path.suffix.lower() in CHECKPOINT_SUFFIXES or "/" in pretrained:
        raise MsaeError(f"{as_path}: checkpoint file not found (--pretrained)")
    import open_clip

    tags = open_clip.list_pretrained_tags_by_model(name)
    if pretrained not in tags:
        known = ", ".join(tags) if tags else "none"
        raise MsaeError(f"--pretrained {pretrained}: not a file and not a pretrained tag of {name} (tags: {known})")
    return pretrained


def check_backbone(name: str, pretrained: str | None) -> str | None:
    """Validate a model name and pretrained value without building the model (cheap: run it
    before indexing a large source) and return the value handed to open_clip."""
    world_clip.register_world_model()
    _check_model_name(name)
    return resolve_pretrained(name, pretrained)


def load_backbone(name: str, pretrained: str | None, device: str = "auto") -> Backbone:
    """Build the open_clip model and load its weights; errors name the model, tag or file."""
    import open_clip

    weights = check_backbone(name, pretrained)
    target = resolve_device(device)
    try:  # weights_only: a .pt/.pth/.bin checkpoint is unpickled without running any code
        model, _, preprocess = open_clip.create_model_and_transforms(
            name, pretrained=weights, device=target, weights_only=True
        )
    except Exception as exc:  # noqa: BLE001 - truncated, foreign or other-architecture files fail in many ways
        what = f"{weights}: not a checkpoint" if weights and Path(weights).is_file() else f"--pretrained {pretrained}:"
        raise MsaeError(
            f"{what} open_clip can load for --model {name} ({_first_words(exc)}); give weights of this "
            "architecture (.safetensors, or a state dict that loads weights-only)"
        ) from exc
    model.eval().requires_grad_(False)
    dim = _embed_dim(model)
    return Backbone(
        model=model,
        preprocess=preprocess,
        tokenizer=open_clip.get_tokenizer(name),
        device=target,
        name=name,
        pretrained=str(pretrained),
        dim=dim,
    )


def _first_words(exc: BaseException, limit: int = 240) -> str:
    """The gist of a loader's error: its type and first words on one line (open_clip lists every
    missing tensor name, hundreds of them)."""
    text = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    return text if len(text) <= limit else text[:limit] + " ..."


def _embed_dim(model: Any) -> int:
    """Width of the joint embedding space, read from the text projection (or an image pass)."""
    projection = getattr(model, "text_projection", None)
    if isinstance(projection, torch.Tensor):
        return int(projection.shape[-1])
    if isinstance(projection, torch.nn.Linear):
        return int(projection.out_features)
    size = getattr(model.visual, "image_size", 224)
    size = (size, size) if isinstance(size, int) else tuple(size)
    device = next(model.parameters()).device
    with torch.no_grad():
        return int(model.encode_image(torch.zeros(1, 3, *size, device=device)).shape[-1])


def batched(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def combine_prompts(embeddings: np.ndarray, groups: Sequence[int]) -> np.ndarray:
    """Combine consecutive prompt embeddings, `groups[i]` of them for row i, into one per row.

    A single prompt stays exactly its raw embedding. Several are combined as CLIP's zero-shot
    classifier does (mean of the L2-normalised embeddings, renormalised), then scaled by the
    prompts' mean raw norm so the row lives at the same scale as raw text embeddings."""
    out = np.empty((len(groups), embeddings.shape[1]), dtype=np.float32)
    start = 0
    for row, count in enumerate(groups):
        block = embeddings[start : start + count].astype(np.float64)
        start += count
        if count == 1:
            out[row] = block[0]
            continue
        norms = np.linalg.norm(block, axis=1, keepdims=True)
        mean = (block / norms).mean(axis=0)
        out[row] = mean / np.linalg.norm(mean) * norms.mean()
    return out
