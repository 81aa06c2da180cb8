"""Embedding throughput: the full `msae embed` path against the backbone's forward pass alone.

Both are measured side by side in one run, on the same model, images and batch size, alternating
repeats so background load hits both alike; the median of the repeats is reported. The data path
alone (decode + preprocess in the DataLoader workers, no model) is reported too: when it is much
faster than the forward pass, a ratio below 1 is CPU contention between the two, not a bottleneck.
- forward: `Backbone.encode_images` on a batch already decoded and preprocessed, repeated over
  the same number of images (the ceiling the data path could reach);
- embed: `open_source("folder") + embed_catalogue` on the image files (listing, decoding and
  preprocessing in DataLoader workers, forward, chunk files, final assembly).
Models: the world CLIP (shipped weights if present, else random init: same speed) on 64 px PNGs,
and open_clip's RN50 (random init) on 256 px JPEGs resized to 224, where the forward pass is
heavy. Writes benchmarks/results/embed.json.

    OMP_NUM_THREADS=1 python benchmarks/embed.py [--images 4096 --batch-size 256 --repeats 3 --rn50-images 64]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import open_clip
import torch
from PIL import Image, ImageDraw
from safetensors.torch import save_file

from msae.backbone import load_backbone
from msae.embed import default_workers, embed_catalogue, image_batches
from msae.io import write_json_atomic
from msae.runtime import configure_torch, resolve_device
from msae.sources import decode_image, open_source
from msae.world import clip as world_clip

RESULTS = Path(__file__).resolve().parent / "results" / "embed.json"


def write_images(root: Path, count: int, size: int, suffix: str) -> None:
    """Shapes on noisy backgrounds in 8 class folders (noise keeps PNG/JPEG decoding honest)."""
    rng = np.random.default_rng(0)
    for i in range(count):
        folder = root / f"class{i % 8}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        image = Image.fromarray(pixels)
        x, y = rng.integers(0, size // 2, 2)
        ImageDraw.Draw(image).ellipse(
            [x, y, x + size // 3, y + size // 3], fill=tuple(int(v) for v in rng.integers(0, 256, 3))
        )
        image.save(folder / f"{i:06d}{suffix}", quality=90) if suffix == ".jpg" else image.save(
            folder / f"{i:06d}{suffix}"
        )


def random_checkpoint(model: str, path: Path) -> Path:
    torch.manual_seed(0)
    state = open_clip.create_model(model).state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def measure(
    name: str,
    model: str,
    pretrained: str,
    root: Path,
    images: int,
    batch: int,
    repeats: int,
    workers: int,
    device: str,
    tmp: Path,
) -> dict:
    backbone = load_backbone(model, pretrained, device)
    catalogue = open_source("folder", root)
    pixels = torch.stack([backbone.preprocess(decode_image(ref)) for ref in catalogue.images[:batch]])
    n_batches = -(-images // batch)
    backbone.encode_images(pixels)  # warm-up (allocator, cudnn autotune)
    forward, full, data = [], [], []
    batches = [list(range(s, min(images, s + batch))) for s in range(0, images, batch)]
    for r in range(repeats):
        start = time.perf_counter()
        decoded = sum(len(i) for i, _, _ in image_batches(catalogue.images, backbone.data_path, batches, workers))
        data.append(decoded / (time.perf_counter() - start))
        start = time.perf_counter()
        for _ in range(n_batches):
            backbone.encode_images(pixels)
        if backbone.device.type == "cuda":
            torch.cuda.synchronize()
        forward.append(n_batches * batch / (time.perf_counter() - start))
        start = time.perf_counter()
        cat = open_source("folder", root)
        summary = embed_catalogue(
            cat,
            tmp / f"{name}-{r}.parquet",
            model=model,
            pretrained=pretrained,
            dataset="bench",
            split="all",
            batch_size=batch,
            workers=workers,
            backbone=backbone,
        )
        full.append(summary.rows / (time.perf_counter() - start))
    fwd, emb = statistics.median(forward), statistics.median(full)
    return {
        "model": model,
        "pretrained": "random init" if pretrained.endswith(".safetensors") else pretrained,
        "images": images,
        "image_px": Image.open(catalogue.images[0].file).size[0],
        "batch_size": batch,
        "workers": workers,
        "data_path_only_images_per_s": round(statistics.median(data), 1),
        "forward_images_per_s": round(fwd, 1),
        "embed_images_per_s": round(emb, 1),
        "ratio": round(emb / fwd, 3),
        "forward_runs": [round(v, 1) for v in forward],
        "embed_runs": [round(v, 1) for v in full],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=4096, help="images per measurement (world CLIP)")
    parser.add_argument("--rn50-images", type=int, default=64, help="images per measurement (RN50); 0 skips it")
    parser.add_argument("--rn50-batch-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers; default: msae embed's default")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    args = parser.parse_args()
    configure_torch()
    workers = default_workers() if args.workers is None else args.workers
    device = resolve_device(args.device)
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        world_clip.register_world_model()
        builtin = world_clip.builtin_weights_path().is_file()
        world_weights = (
            "builtin" if builtin else str(random_checkpoint(world_clip.WORLD_MODEL, tmp / "world-random.safetensors"))
        )
        write_images(tmp / "world", args.images, 64, ".png")
        rows.append(
            measure(
                "world",
                world_clip.WORLD_MODEL,
                world_weights,
                tmp / "world",
                args.images,
                args.batch_size,
                args.repeats,
                workers,
                args.device,
                tmp,
            )
        )
        if args.rn50_images:
            rn50 = str(random_checkpoint("RN50", tmp / "rn50-random.safetensors"))
            write_images(tmp / "rn50", args.rn50_images, 256, ".jpg")
            rows.append(
                measure(
                    "rn50",
                    "RN50",
                    rn50,
                    tmp / "rn50",
                    args.rn50_images,
                    args.rn50_batch_size,
                    args.repeats,
                    workers,
                    args.device,
                    tmp,
                )
            )
    print(
        f"{'model':<12}{'px':>5}{'batch':>7}{'workers':>9}{'data img/s':>12}{'forward img/s':>15}{'embed img/s':>13}{'ratio':>8}"
    )
    for r in rows:
        print(
            f"{r['model']:<12}{r['image_px']:>5}{r['batch_size']:>7}{r['workers']:>9}{r['data_path_only_images_per_s']:>12}"
            f"{r['forward_images_per_s']:>15}{r['embed_images_per_s']:>13}{r['ratio']:>8.1%}"
        )
    write_json_atomic(
        RESULTS,
        {
            "benchmark": "msae embed vs forward pass only",
            "device": str(device),
            "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "machine": platform.processor() or platform.machine(),
            "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
            "target_ratio": 0.85,
            "results": rows,
        },
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
