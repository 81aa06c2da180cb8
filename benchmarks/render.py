"""Throughput of `msae world render` (PNG files + manifest) with 1 and 2 worker processes.

Reports wall-clock images/s and images per CPU-second (all processes). On a shared machine the
wall-clock rate depends on the other jobs; the CPU-time rate does not, and times the number of
cores gives the rate on an otherwise idle machine. The load average is recorded next to it.

    python benchmarks/render.py [--n 6000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

from msae.io import write_json_atomic
from msae.world.render import render_world


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measure(n: int, workers: int, root: Path) -> dict[str, float]:
    out = root / f"w{workers}"
    shutil.rmtree(out, ignore_errors=True)
    cpu0, t0 = _cpu_seconds(), time.perf_counter()
    render_world(out, n_train=n, n_val=0, n_test=0, n_bias=0, seed=0, workers=workers, progress=False)
    wall, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
    return {"workers": workers, "images": n, "wall_s": wall, "images_per_s": n / wall, "images_per_cpu_s": n / cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=6000, help="images per measurement")
    parser.add_argument("--repeats", type=int, default=2, help="measurements per worker count (best kept)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "render.json"))
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            runs = [measure(args.n, workers, Path(tmp)) for _ in range(args.repeats)]
            rows.append(max(runs, key=lambda r: r["images_per_s"]))
    load = os.getloadavg()
    print(f"{'workers':>7} {'images':>7} {'wall s':>7} {'images/s':>9} {'images/CPU-s':>13}")
    for r in rows:
        print(
            f"{r['workers']:>7} {r['images']:>7} {r['wall_s']:>7.2f} {r['images_per_s']:>9.0f} {r['images_per_cpu_s']:>13.0f}"
        )
    idle_estimate = 2 * min(r["images_per_cpu_s"] for r in rows)
    print(f"load average {load[0]:.1f}; estimated rate on 2 idle cores: {idle_estimate:.0f} images/s (target >= 1000)")
    write_json_atomic(
        args.out,
        {
            "benchmark": "world render (64x64 PNG + manifest)",
            "rows": rows,
            "load_average_1min": load[0],
            "cpu_count": os.cpu_count(),
            "estimated_images_per_s_2_idle_cores": idle_estimate,
            "target_images_per_s": 1000,
        },
    )


if __name__ == "__main__":
    main()
