"""Small fixtures for the embed tests: a random-init world CLIP saved as a checkpoint file, tiny
images, and an independent reference that calls open_clip directly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import open_clip
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from msae.world.clip import WORLD_MODEL, register_world_model


def save_random_world_clip(path: Path, seed: int = 0) -> Path:
    """A randomly initialised msae-world model saved as a safetensors or .pt state dict."""
    register_world_model()
    torch.manual_seed(seed)
    model = open_clip.create_model(WORLD_MODEL)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if path.suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path


def reference_model(checkpoint: Path) -> tuple[torch.nn.Module, object]:
    """open_clip model + eval transform with the checkpoint's tensors copied in by hand (not
    through msae or open_clip's loader), in fp32 eval mode on the CPU."""
    register_world_model()
    model, _, preprocess = open_clip.create_model_and_transforms(WORLD_MODEL)
    state = load_file(str(checkpoint)) if checkpoint.suffix == ".safetensors" else torch.load(checkpoint)
    model.load_state_dict(state)
    return model.eval(), preprocess


def reference_image_embeddings(checkpoint: Path, files: list[Path]) -> np.ndarray:
    model, preprocess = reference_model(checkpoint)
    with torch.no_grad():
        pixels = torch.stack([preprocess(Image.open(f).convert("RGB")) for f in files])
        return model.encode_image(pixels).numpy()


def reference_text_embeddings(checkpoint: Path, texts: list[str]) -> np.ndarray:
    model, _ = reference_model(checkpoint)
    tokenizer = open_clip.get_tokenizer(WORLD_MODEL)
    with torch.no_grad():
        return model.encode_text(tokenizer(texts)).numpy()


def random_image(rng: np.random.Generator, size: int = 48) -> Image.Image:
    """Random blocky RGB image (sizes other than 64 exercise the resize in preprocessing)."""
    small = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((size, size), Image.NEAREST)


def write_images(folder: Path, names: list[str], seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    files = []
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        random_image(rng).save(path)
        files.append(path)
    return files


def write_truncated_png(path: Path, seed: int = 1) -> Path:
    """A PNG cut in half: opens, fails on decode (the tricky kind of corrupt file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    random_image(np.random.default_rng(seed), 64).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path
