"""The GPU grid of the sparse training kernels, in one run on one CUDA device (benchmarks/gpu.sh).

At d=768, n=24,576, batch 16,384, in bf16 (autocast, as `msae train --bf16`) and fp32: a TopK
training step on every sparse backend and encoder-backward choice (which one the defaults should
use), then TopK k=32, BatchTopK k=32 and Matryoshka RW at the paper's nesting (64 doubling to
16,384, plus n) with TopK and BatchTopK inner activation, and a Matryoshka whose widest level is
sparse, each dense (today's objective) against sparse, the Matryoshka ones at several dense-band
fractions. Printed per row: samples/s and the fraction of one plain matmul's measured FLOP/s
(benchmarks/step.py explains mm_frac and work_frac). Results go to benchmarks/results/gpu.json,
rewritten after every configuration so a run cut short keeps what it measured.

Without CUDA it says so and exits 0 (writing a JSON that records it).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

RESULTS = Path(__file__).resolve().parent / "results"


def _write(path: Path, payload: dict[str, Any]) -> None:
    from msae.io import write_json_atomic

    write_json_atomic(path, payload)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=RESULTS / "gpu.json")
    parser.add_argument("--d", type=int, default=768)
    parser.add_argument("--n", type=int, default=24576)
    parser.add_argument("--batch-size", type=int, default=16384)
    parser.add_argument("--budget-s", type=float, default=280.0, help="skip what is left after this many seconds")
    parser.add_argument("--dtypes", default="bf16,fp32")
    args = parser.parse_args(argv)

    import torch

    payload: dict[str, Any] = {
        "benchmark": "gpu_grid",
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "host": platform.node(),
        "d": args.d,
        "n": args.n,
        "batch_size": args.batch_size,
    }
    if not torch.cuda.is_available():
        print("no CUDA device here: the GPU grid was not measured (run benchmarks/gpu.sh on a machine with one)")
        _write(args.out, {**payload, "cuda": False, "rows": []})
        return 0

    import step  # benchmarks/step.py

    from msae.runtime import configure_torch
    from msae.sae import bands

    configure_torch()
    device = torch.device("cuda")
    payload |= {"cuda": True, "device": torch.cuda.get_device_name(device), "rows": [], "skipped": [], "errors": []}
    started = time.perf_counter()
    d, n, batch = args.d, args.n, args.batch_size
    plan: list[tuple[str, str, list[str], list[str | None], list[str], list[float | None], int]] = []
    for dtype in args.dtypes.split(","):
        # (dtype, config, paths, backends, encoder backwards, dense fractions, steps per round)
        plan.append((dtype, "topk", ["dense", "sparse"], ["gather"], ["sparse", "dense"], [None], 5))
        plan.append((dtype, "topk", ["dense", "sparse"], ["csr", "hybrid"], ["sparse"], [None], 5))
        plan.append((dtype, "batchtopk", ["dense", "sparse"], [None], ["sparse"], [None], 5))
        plan.append((dtype, "relu", ["sparse"], [None], ["sparse"], [None], 3))  # the k = n level alone
        plan.append((dtype, "mat-rw-sparse", ["dense", "sparse"], [None], ["sparse"], [None, 1.0], 3))
        plan.append((dtype, "mat-rw", ["dense", "sparse"], [None], ["sparse"], [None, 0.0, 0.005, 0.02, 0.1], 2))
    for dtype in args.dtypes.split(","):
        plan.append((dtype, "mat-rw-btk", ["dense", "sparse"], [None], ["sparse"], [None], 1))

    print(
        f"{'dtype':<6}{'config':<28}{'path':<30}{'step ms':>10}{'samples/s':>12}{'mm_frac':>9}{'work_frac':>10}",
        flush=True,
    )
    for dtype, name, paths, backends, encoder_backwards, fractions, steps in plan:
        if time.perf_counter() - started > args.budget_s:
            payload["skipped"].append(f"{dtype} {name}")
            continue
        spec = step.specs_for(d, n, [name])[0]
        try:
            rows = step.run_spec(
                spec, paths, batch, device, dtype == "bf16", 3, steps, 1, backends, encoder_backwards, fractions
            )
        except Exception as exc:  # noqa: BLE001 - one failing configuration (OOM, a missing kernel) must not end the grid
            payload["errors"].append(f"{dtype} {name} {backends}: {type(exc).__name__}: {str(exc)[:300]}")
            print(f"{dtype:<6}{name:<28}{type(exc).__name__}: {str(exc)[:200]}", flush=True)
            continue
        finally:
            torch.cuda.empty_cache()
        base = next((r["step_ms"] for r in rows if r["path"] == "dense"), None)
        for r in rows:
            r["dtype"] = dtype
            r["speedup_vs_dense"] = base / r["step_ms"] if base else None
            payload["rows"].append(r)
            print(
                f"{dtype:<6}{r['config']:<28}{r['path']:<30}{r['step_ms']:>10.2f}{r['samples_per_s']:>12.0f}"
                f"{r['mm_frac']:>9.2f}{r['work_frac']:>10.2f}",
                flush=True,
            )
        payload["seconds"] = time.perf_counter() - started
        _write(args.out, payload)
    payload["seconds"] = time.perf_counter() - started
    payload["dense_band_fraction_default"] = {
        "fp32": bands.default_dense_fraction(device, torch.float32),
        "bf16": bands.default_dense_fraction(device, torch.bfloat16),
    }
    _write(args.out, payload)
    print(f"wrote {args.out} ({payload['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
