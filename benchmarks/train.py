"""Training throughput of every SAE variant, and how much of a step is the unavoidable matmuls.

For each (variant, d, expansion) a full `training_step` (forward, backward, decoder
renormalisation, gradient projection, clipping, AdamW) is timed on a random batch, and side by
side the plain matmuls the dense algorithm of that step does are timed alone with the same
shapes: encoder forward and weight gradient, and per decoded level the decoder forward, its input
gradient and weight gradient (Matryoshka decodes every nesting level). `matmul_fraction` = matmul
time / step time: for ReLU and JumpReLU (dense) the share of the step spent in those matmuls (the
target is >= 0.7); TopK, BatchTopK and Matryoshka train through the sparse kernels, so there a
value above 1 says the step beats the dense algorithm's matmuls alone. On CUDA the step's FLOP/s
(dense-algorithm FLOPs) is compared with the plain matmuls' FLOP/s.

    python benchmarks/train.py                   # CPU: short grid; CUDA: full grid
    python benchmarks/train.py --grid full --device cuda
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from msae.io import write_json_atomic
from msae.runtime import configure_torch, resolve_device
from msae.sae import SparseAutoencoder, make_config
from msae.train import ADAM_BETAS, ADAM_EPS, training_step

VARIANTS = ("relu", "topk", "batchtopk", "matryoshka", "jumprelu")
FULL_GRID = [(v, d, e) for v in VARIANTS for d in (512, 768) for e in (8, 16, 32)]
# CPU: every variant at expansion 8; the wider dictionaries only for topk (a Matryoshka step at
# d=768 x 32 is ~30 matmuls of 155 GFLOP, minutes per step on one core).
CPU_GRID = [(v, d, 8) for v in VARIANTS for d in (512, 768)] + [("topk", d, e) for d in (512, 768) for e in (16, 32)]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_pair(
    first: Callable[[], object], second: Callable[[], object], device: torch.device, warmup: int, repeats: int
) -> tuple[float, float]:
    """Seconds per call of two functions, timed alternately and reported as the minimum over
    repeats, so a busy machine slows both sides alike and bursts of load drop out."""
    for _ in range(warmup):
        first()
        second()
    best = [float("inf"), float("inf")]
    for _ in range(repeats):
        for slot, fn in enumerate((first, second)):
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            best[slot] = min(best[slot], time.perf_counter() - start)
    return best[0], best[1]


def _decoded_levels(model: SparseAutoencoder) -> int:
    return len(model.sparse_levels())


def plain_matmuls(
    batch: int, d: int, n: int, levels: int, device: torch.device, dtype: torch.dtype
) -> Callable[[], None]:
    """The matmuls of one step, alone: 2 encoder-sized + 3 per decoded level, B*d*n MACs each."""
    x, g_a = torch.randn(batch, d, device=device, dtype=dtype), torch.randn(batch, n, device=device, dtype=dtype)
    w_enc, w_dec = torch.randn(d, n, device=device, dtype=dtype), torch.randn(n, d, device=device, dtype=dtype)
    z, g_x = torch.randn(batch, n, device=device, dtype=dtype), torch.randn(batch, d, device=device, dtype=dtype)

    def run() -> None:
        x @ w_enc  # encoder forward
        x.T @ g_a  # encoder weight gradient
        for _ in range(levels):
            z @ w_dec  # decoder forward
            g_x @ w_dec.T  # gradient to the latents
            z.T @ g_x  # decoder weight gradient

    return run


def measure(
    variant: str, d: int, expansion: int, batch: int, device: torch.device, warmup: int, steps: int, bf16: bool
) -> dict:
    torch.manual_seed(0)
    cfg = make_config(variant, d, expansion)  # the paper's defaults (k=64 / 32, nesting from 64, ...)
    model = SparseAutoencoder(cfg).to(device).train()
    opt = torch.optim.AdamW(
        model.parameters(), lr=1e-4, betas=ADAM_BETAS, eps=ADAM_EPS, weight_decay=0.0, fused=device.type == "cuda"
    )
    x = torch.randn(batch, d, device=device)
    levels, n = _decoded_levels(model), cfg.n_latents
    matmuls = plain_matmuls(batch, d, n, levels, device, torch.bfloat16 if bf16 else torch.float32)
    step = functools.partial(training_step, model, opt, x, bf16=bf16)
    step_s, matmul_s = _time_pair(step, matmuls, device, warmup, steps)
    flops = 2.0 * batch * d * n * (2 + 3 * levels)
    del model, opt, x, step
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {
        "variant": variant,
        "d": d,
        "expansion": expansion,
        "n_latents": n,
        "decoded_levels": levels,
        "samples_per_s": batch / step_s,
        "step_ms": 1e3 * step_s,
        "matmul_ms": 1e3 * matmul_s,
        "matmul_fraction": matmul_s / step_s,
        "step_tflops": flops / step_s / 1e12,
        "matmul_tflops": flops / matmul_s / 1e12,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda")
    parser.add_argument(
        "--grid",
        choices=("auto", "cpu", "full"),
        default="auto",
        help="auto: full on CUDA, the short CPU grid otherwise",
    )
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps; default 1 on CPU, 3 on CUDA")
    parser.add_argument(
        "--steps", type=int, default=None, help="timed repeats (minimum reported); default 3 on CPU, 20 on CUDA"
    )
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (and bf16 plain matmuls)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "train.json")
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    configure_torch()
    cuda = device.type == "cuda"
    grid_name = "full" if args.grid == "full" or (args.grid == "auto" and cuda) else "cpu-short"
    grid = FULL_GRID if grid_name == "full" else CPU_GRID
    wanted = set(args.variants.split(","))
    grid = [g for g in grid if g[0] in wanted]
    warmup = args.warmup if args.warmup is not None else (3 if cuda else 1)
    steps = args.steps if args.steps is not None else (20 if cuda else 3)

    rows = []
    header = f"{'variant':<11}{'d':>5}{'exp':>5}{'n':>7}{'lvls':>5}{'samples/s':>12}{'step ms':>10}{'matmul ms':>11}{'matmul %':>10}{'TFLOP/s':>9}{'peak':>7}"
    print(header, flush=True)
    for variant, d, expansion in grid:
        row = measure(variant, d, expansion, args.batch_size, device, warmup, steps, args.bf16)
        rows.append(row)
        print(
            f"{variant:<11}{d:>5}{expansion:>5}{row['n_latents']:>7}{row['decoded_levels']:>5}{row['samples_per_s']:>12.0f}"
            f"{row['step_ms']:>10.1f}{row['matmul_ms']:>11.1f}{100 * row['matmul_fraction']:>9.1f}%"
            f"{row['step_tflops']:>9.3f}{row['matmul_tflops']:>7.3f}",
            flush=True,
        )

    result = {
        "benchmark": "train_step",
        "device": torch.cuda.get_device_name(device) if cuda else platform.processor() or platform.machine(),
        "device_type": device.type,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "batch_size": args.batch_size,
        "bf16": args.bf16,
        "warmup_steps": warmup,
        "timed_repeats_min_reported": steps,
        "grid": grid_name,
        "python": sys.version.split()[0],
        "rows": rows,
    }
    write_json_atomic(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
