"""`msae world render`: write the world's images (PNG), its manifest Parquet and world.json.

Work is cut into chunks of consecutive indices of one split and handed to a process pool; every
image's randomness comes from (seed, split, index), so the bytes do not depend on the pool size.
Everything is rendered into a staging folder beside the output and moved into it only when the
whole world is written (msae.io.staged_dir; the manifest, then world.json, last): an interrupted
or failed render leaves an earlier world in the folder exactly as it was.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from msae.config.world import RenderConfig, WorldParams
from msae.errors import MsaeError
from msae.world.attributes import ATTRIBUTES
from msae.world.scene import (
    SPLIT_CODES,
    Scene,
    draw_scene,
    image_rng,
    sample_scene,
    scene_record,
)

if TYPE_CHECKING:
    import pandas as pd

MANIFEST = "manifest.parquet"
WORLD_JSON = "world.json"
CHUNK = 256
PNG_COMPRESS_LEVEL = 1


def scene_at(seed: int, split: str, index: int, params: WorldParams) -> Scene:
    """The scene of image `index` of `split` (attributes only)."""
    rng = image_rng(seed, SPLIT_CODES[split], index)
    return sample_scene(rng, params, biased=(split == "bias_train"))


def image_id(split: str, index: int) -> str:
    return f"{split}-{index:06d}"


def _render_chunk(job: tuple[Path, int, str, int, int, WorldParams]) -> list[dict[str, object]]:
    out, seed, split, start, stop, params = job
    rows = []
    folder = out / "images" / split
    for index in range(start, stop):
        scene = scene_at(seed, split, index, params)
        ident = image_id(split, index)
        rel = f"images/{split}/{ident}.png"
        buffer = io.BytesIO()
        draw_scene(scene, params.image_size).save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
        (folder / f"{ident}.png").write_bytes(buffer.getvalue())
        rows.append({"id": ident, "split": split, "path": rel, **scene_record(scene)})
    return rows


def _chunk_arrays(job: tuple[int, str, int, int, WorldParams]) -> np.ndarray:
    seed, split, start, stop, params = job
    side = params.image_size
    out = np.empty((stop - start, side, side, 3), dtype=np.uint8)
    for row, index in enumerate(range(start, stop)):
        out[row] = np.asarray(draw_scene(scene_at(seed, split, index, params), side))
    return out


def resolve_workers(workers: str | int | None) -> int:
    """None (or 'auto') means one process per CPU this process may use."""
    if workers is None or workers == "auto":
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # macOS, Windows
            return max(1, os.cpu_count() or 1)
    count = int(workers)
    if count < 1:
        raise MsaeError(f"--workers {workers}: must be 'auto' or a positive integer")
    return count


def _chunks(split: str, count: int) -> Iterator[tuple[str, int, int]]:
    for start in range(0, count, CHUNK):
        yield split, start, min(count, start + CHUNK)


def _pool_map(function: Callable, jobs: list, workers: int, progress_total: int, desc: str, progress: bool) -> list:
    """Ordered map over a process pool (or inline for one worker) with a progress bar in images."""
    from tqdm import tqdm

    results = []

    def consume(stream: Iterator) -> None:
        for result in stream:
            results.append(result)
            bar.update(len(result))

    with tqdm(total=progress_total, desc=desc, unit="img", disable=not progress) as bar:
        if workers == 1:
            consume(map(function, jobs))
        else:
            # the pool is terminated on leaving the block (also on error), after all results arrived
            with get_context("fork" if os.name == "posix" else "spawn").Pool(workers) as pool:
                consume(pool.imap(function, jobs))
    return results


def render_arrays(
    seed: int, split: str, count: int, params: WorldParams, workers: int | None = None, progress: bool = True
) -> np.ndarray:
    """Images [count, H, W, 3] uint8 of one split in memory (same pixels as the PNGs)."""
    jobs = [(seed, s, a, b, params) for s, a, b in _chunks(split, count)]
    parts = _pool_map(_chunk_arrays, jobs, resolve_workers(workers), count, f"render {split}", progress)
    side = params.image_size
    return np.concatenate(parts) if parts else np.empty((0, side, side, 3), dtype=np.uint8)


def render_world(config: RenderConfig, progress: bool = True) -> Path:
    """`msae world render`: render every split to `config.out`; return the manifest path."""
    import pandas as pd

    from msae.io import atomic_path, staged_dir, write_json_atomic

    counts = {
        "train": config.n_train,
        "val": config.n_val,
        "test": config.n_test,
        "bias_train": config.n_bias,
        "bias_control": config.n_bias,
    }
    if not any(counts.values()):
        raise MsaeError("nothing to render: every split count is 0")
    params = WorldParams(**config.world_params())
    with staged_dir(config.out, WORLD_JSON) as root:
        for split in counts:
            (root / "images" / split).mkdir(parents=True, exist_ok=True)
        jobs = [(root, config.seed, s, a, b, params) for split, n in counts.items() for s, a, b in _chunks(split, n)]
        parts = _pool_map(
            _render_chunk, jobs, resolve_workers(config.workers), sum(counts.values()), "render world", progress
        )
        frame = pd.DataFrame([row for part in parts for row in part])
        with atomic_path(root / MANIFEST) as tmp:
            frame.to_parquet(tmp, index=False)
        write_json_atomic(root / WORLD_JSON, world_summary(frame, config.seed, counts, params))
    return config.out / MANIFEST


def world_summary(frame: pd.DataFrame, seed: int, counts: dict[str, int], params: WorldParams) -> dict[str, object]:
    """world.json: the render parameters plus the bias rates actually realised in the bias splits."""
    summary: dict[str, object] = {
        "seed": seed,
        "counts": counts,
        "attributes": {name: list(values) for name, values in ATTRIBUTES.items()},
        **params.world_params(),
        "bias_other_shape_rate": params.other_shape_bias_rate(),
    }
    for split in ("bias_train", "bias_control"):
        part = frame[frame["split"] == split]
        target = part["attr_shape"] == params.bias_shape
        has_color = part["attr_color"] == params.bias_color
        summary[f"{split}_rate_target"] = float(has_color[target].mean()) if target.any() else None
        summary[f"{split}_rate_other"] = float(has_color[~target].mean()) if (~target).any() else None
    return summary
