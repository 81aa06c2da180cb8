"""One msae training step, dense (`SparseAutoencoder.objective(dense=True)`, the reference
computation) against the sparse kernels (msae.sae.sparse, what `msae train` runs), side by side in
one run.

A step is the full `msae.train.training_step` (forward, backward, decoder renormalisation,
gradient projection, clipping, AdamW); the sparse path is the model's own objective, or
`msae.sae.sparse.nested_objective` with the backend options given on the command line. Paths of one configuration are timed
interleaved (round r times `--steps` steps of every path, then round r+1), and the median over
rounds of the mean step time is reported, so load from other processes hits every path alike.
The optimiser runs at learning rate 0 (the same work), so the model stays in the state timed:
its initialisation, or with `--active` an encoder bias giving a trained SAE's code density (the
cost of the paper's last Matryoshka level, ReLU over all latents, follows that density).

Beside samples/s each row gives `mm_frac`: the step's FLOPs counted the way benchmarks/train.py
counts the dense algorithm (2*B*d*n per matmul, 2 + 3*levels matmuls) per second, as a fraction of
the FLOP/s one plain [B, d] x [d, n] matmul of the same shapes and dtype reaches when timed in the
same run; and `work_frac`: the same with the FLOPs the path actually performs (for the sparse path,
one encoder matmul plus 4*B*k*d per sparse level, plus 3 matmuls per densely decoded band and the
encoder gradient matmul when a band is dense).

    python benchmarks/step.py                          # CPU grid (d=512, n=4096)
    python benchmarks/step.py --grid paper             # also d=768, n=6144 and 24576 (sparse-heavy)
    python benchmarks/step.py --device cuda --grid gpu --dtype bf16
    python benchmarks/step.py --configs topk,mat-rw --active 0.25 --compile --warmup 3 --out /tmp/c.json
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from msae.io import write_json_atomic
from msae.runtime import configure_torch, resolve_device
from msae.sae import bands, kernels, sparse

RESULTS = Path(__file__).parent / "results"


@dataclass
class Spec:
    """One SAE configuration: variant, sizes and the nested levels of its loss."""

    name: str
    variant: str
    d: int
    n: int
    ks: list[int]
    weights: list[float]
    over_batch: bool
    options: dict[str, Any] = field(default_factory=dict)


def paper_nesting(n: int, start: int = 64) -> list[int]:
    levels = [start]
    while levels[-1] * 2 <= n:
        levels.append(levels[-1] * 2)
    return levels if levels[-1] == n else levels + [n]


def specs_for(d: int, n: int, which: list[str]) -> list[Spec]:
    nest = paper_nesting(n)
    h = len(nest)
    rw = [float(h - i) for i in range(h)]
    table = {
        "topk": Spec("topk k=32", "topk", d, n, [32], [1.0], False, {"k": 32}),
        # the paper's last Matryoshka level (k = n) on its own: a floor under any Matryoshka step
        "relu": Spec("relu (the k = n level)", "relu", d, n, [n], [1.0], False, {}),
        "batchtopk": Spec("batchtopk k=32", "batchtopk", d, n, [32], [1.0], True, {"k": 32}),
        "mat-rw": Spec(
            f"matryoshka rw {h} lv",
            "matryoshka",
            d,
            n,
            nest,
            rw,
            False,
            {"nesting": nest, "weighting": "rw", "inner": "topk"},
        ),
        "mat-uw": Spec(
            f"matryoshka uw {h} lv",
            "matryoshka",
            d,
            n,
            nest,
            [1.0] * h,
            False,
            {"nesting": nest, "weighting": "uw", "inner": "topk"},
        ),
        "mat-rw-btk": Spec(
            f"matryoshka rw {h} lv btk",
            "matryoshka",
            d,
            n,
            nest,
            rw,
            True,
            {"nesting": nest, "weighting": "rw", "inner": "batchtopk"},
        ),
        "mat-rw-sparse": Spec(
            f"matryoshka rw 64..{nest[-3]}",
            "matryoshka",
            d,
            n,
            nest[:-2],
            rw[:-2],
            False,
            {"nesting": nest[:-2], "weighting": "rw", "inner": "topk"},
        ),
    }
    return [table[w] for w in which]


# ---------------------------------------------------------------- the one adapter to msae internals
def msae_step_factory(
    spec: Spec,
    path: str,
    device: torch.device,
    bf16: bool,
    backend: str | None,
    encoder_backward: str,
    dense_fraction: float | None,
    lr: float = 1e-4,
    with_model: bool = False,
    active: float | None = None,
    compiled: bool = False,
) -> Any:
    """A closure running one msae training step of `spec` on `path` ('dense' or 'sparse'), and
    the model and its optimiser too when `with_model`. `active`: shift the encoder bias so that each latent's
    pre-activation is positive on this share of the (standard normal) inputs, the density of a
    trained SAE's ReLU code, instead of the initial ~half. `compiled`: the objective wrapped in
    `torch.compile` (the backward of msae's kernels stays eager). Everything the benchmarks know
    about msae's model, config and training loop is here."""
    from msae.sae import SparseAutoencoder, make_config
    from msae.train import training_step

    torch.manual_seed(0)
    model = SparseAutoencoder(make_config(spec.variant, spec.d, spec.n / spec.d, **spec.options)).to(device).train()
    if active is not None:
        with torch.no_grad():
            probe = torch.randn(4096, spec.d, device=device, generator=torch.Generator(device).manual_seed(2))
            pre = model.pre_activation_processed(probe)
            model.b_enc -= pre.quantile(1.0 - active, dim=0)
    if path == "dense":
        model.objective = functools.partial(SparseAutoencoder.objective, model, dense=True)  # type: ignore[method-assign]
    elif backend is not None or encoder_backward != "sparse" or dense_fraction is not None:
        params = (model.W_enc, model.b_enc, model.W_dec, model.b_pre)
        options = {"backend": backend, "encoder_backward": encoder_backward, "dense_fraction": dense_fraction}
        model.objective = lambda x, dead=None: sparse.nested_objective(  # type: ignore[method-assign]
            x, *params, spec.ks, spec.weights, spec.over_batch, **options
        )
    if compiled:
        model.objective = torch.compile(model.objective)  # type: ignore[method-assign]
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=lr, betas=(0.9, 0.999), eps=6.25e-10, weight_decay=0.0, fused=device.type == "cuda"
    )
    run = lambda x: training_step(model, optimizer, x, bf16=bf16)  # noqa: E731
    return (run, model, optimizer) if with_model else run


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(
    fns: dict[str, Callable[[], object]], device: torch.device, rounds: int, steps: int, warmup: int
) -> dict[str, float]:
    """Median over `rounds` of the mean seconds per call, the functions taking turns each round."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            _sync(device)
            start = time.perf_counter()
            for _ in range(steps):
                fn()
            _sync(device)
            times[name].append((time.perf_counter() - start) / steps)
    return {name: statistics.median(t) for name, t in times.items()}


def flops(
    spec: Spec, path: str, batch: int, dense_fraction: float, row_positives: torch.Tensor | None = None
) -> tuple[float, float]:
    """(dense-algorithm FLOPs, FLOPs this path performs) of one step; `row_positives` when the
    sparse path clips its levels to them (msae.sae.bands.make_plan)."""
    unit = 2.0 * batch * spec.d * spec.n
    dense = unit * (2 + 3 * len(spec.ks))
    if path == "dense":
        return dense, dense
    plan = bands.make_plan(batch, spec.n, spec.ks, spec.over_batch, "csr", dense_fraction)
    if row_positives is not None and not plan.all_sparse:
        plan = bands.make_plan(batch, spec.n, spec.ks, spec.over_batch, "csr", dense_fraction, row_positives)
    dense_bands = len(plan.dense_bands)
    rows = row_positives if row_positives is not None else torch.full((1 if spec.over_batch else batch,), plan.width)
    entries = float(sum((rows - lo).clamp(0, hi - lo).sum() for lo, hi in map(plan.band_range, plan.sparse_bands)))
    sparse_work = 2.0 * entries * spec.d * 4  # decode, grad of values, grad of W_dec, grad of W_enc
    work = unit + sparse_work + dense_bands * 3 * unit + (unit if dense_bands else 0.0)
    return dense, work


def state_name(active: float | None) -> str:
    return "init" if active is None else f"active {active:.0%}"


def matmul_rate(batch: int, d: int, n: int, device: torch.device, dtype: torch.dtype, rounds: int) -> float:
    """FLOP/s of one plain [B, d] x [d, n] matmul."""
    x, w = torch.randn(batch, d, device=device, dtype=dtype), torch.randn(d, n, device=device, dtype=dtype)
    seconds = interleaved({"mm": lambda: x @ w}, device, rounds, 3, 1)["mm"]
    return 2.0 * batch * d * n / seconds


def run_spec(
    spec: Spec,
    paths: list[str],
    batch: int,
    device: torch.device,
    bf16: bool,
    rounds: int,
    steps: int,
    warmup: int,
    backends: list[str | None],
    encoder_backwards: list[str],
    fractions: list[float | None],
    active: float | None = None,
    compile_modes: tuple[bool, ...] = (False,),
) -> list[dict[str, Any]]:
    torch.manual_seed(1)
    x = torch.randn(batch, spec.d, device=device)
    fns: dict[str, Callable[[], object]] = {}
    labels: dict[str, float] = {}
    model = None  # a sparse path's model (all start alike, and lr 0 keeps them so)
    compute = torch.bfloat16 if bf16 and device.type == "cuda" else torch.float32
    for path in paths:
        if path == "dense":
            step = msae_step_factory(spec, "dense", device, bf16, None, "sparse", 1.0, lr=0.0, active=active)
            fns["dense"] = lambda step=step: step(x)
            continue
        for backend in backends:
            for eb in encoder_backwards:
                for fraction, compiled in ((f, c) for f in fractions for c in compile_modes):
                    used = bands.default_dense_fraction(device, compute) if fraction is None else fraction
                    label = f"sparse[{backend or kernels.default_backend(device, compute)},{eb}" + (
                        f",{used:g}]" if len(fractions) > 1 else "]"
                    )
                    label += "+compile" if compiled else ""
                    step, model, _ = msae_step_factory(
                        spec,
                        "sparse",
                        device,
                        bf16,
                        backend,
                        eb,
                        fraction,
                        lr=0.0,
                        with_model=True,
                        active=active,
                        compiled=compiled,
                    )
                    fns[label] = lambda step=step: step(x)
                    labels[label] = used
    seconds = interleaved(fns, device, rounds, steps, warmup)
    positives = None
    if device.type == "cpu" and model is not None:  # where the sparse path clips its levels to the positives
        with torch.no_grad():
            a = (x - model.b_pre) @ model.W_enc + model.b_enc
        positives = (a > 0).sum().view(1) if spec.over_batch else (a > 0).sum(1)
    rate = matmul_rate(batch, spec.d, spec.n, device, torch.bfloat16 if bf16 else torch.float32, rounds)
    rows = []
    for label, s in seconds.items():
        dense_flops, work = flops(
            spec, "dense" if label == "dense" else "sparse", batch, labels.get(label, 1.0), positives
        )
        rows.append(
            {
                "config": spec.name,
                "state": state_name(active),
                "dense_fraction": labels.get(label),
                "variant": spec.variant,
                "d": spec.d,
                "n": spec.n,
                "batch": batch,
                "levels": len(spec.ks),
                "ks": spec.ks,
                "path": label,
                "step_ms": 1e3 * s,
                "samples_per_s": batch / s,
                "mm_frac": dense_flops / s / rate,
                "work_frac": work / s / rate,
                "matmul_tflops": rate / 1e12,
            }
        )
    return rows


GRIDS = {
    # (d, n, configurations, paths)
    "cpu": [
        (
            512,
            4096,
            ["topk", "batchtopk", "relu", "mat-rw", "mat-uw", "mat-rw-btk", "mat-rw-sparse"],
            ["dense", "sparse"],
        )
    ],
    "paper": [
        (768, 6144, ["topk", "mat-rw"], ["dense", "sparse"]),
        (768, 24576, ["topk", "mat-rw", "mat-rw-sparse"], ["sparse"]),
    ],
    "gpu": [(768, 24576, ["topk", "batchtopk", "mat-rw", "mat-rw-btk", "mat-rw-sparse"], ["dense", "sparse"])],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--grid", choices=sorted(GRIDS), default="cpu")
    parser.add_argument("--configs", default=None, help="comma-separated subset of the grid's configurations")
    parser.add_argument("--batch-size", type=int, default=None, help="default 4096 on CPU, 16384 on CUDA")
    parser.add_argument(
        "--dtype", choices=("fp32", "bf16"), default="fp32", help="bf16: autocast, as msae train --bf16"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per path and round")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--backends", default="default", help="comma list of csr,index,default")
    parser.add_argument("--encoder-backward", default="sparse", help="comma list of sparse,dense")
    parser.add_argument("--no-dense", action="store_true", help="time only the sparse paths")
    parser.add_argument(
        "--dense-fraction",
        default="default",
        help="comma list: bands wider than this share of n are decoded densely ('default': the device's)",
    )
    parser.add_argument(
        "--active",
        default="init,0.25",
        help="comma list of model states: 'init' (about half the latents positive) or the share of "
        "positive pre-activations per latent to shift the encoder bias to (0.25: a trained SAE's density)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also time each sparse path with its objective under torch.compile (give --warmup >= 3: "
        "the warm-up steps compile)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "step.json")
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    configure_torch()
    batch = args.batch_size or (16384 if device.type == "cuda" else 4096)
    backends = [None if b == "default" else b for b in args.backends.split(",")]
    encoder_backwards = args.encoder_backward.split(",")
    fractions = [None if f == "default" else float(f) for f in args.dense_fraction.split(",")]
    states = [None if a == "init" else float(a) for a in args.active.split(",")]
    wanted = set(args.configs.split(",")) if args.configs else None
    rows: list[dict[str, Any]] = []
    print(
        f"{'config':<28}{'state':<11}{'d':>5}{'n':>7}  {'path':<22}{'step ms':>10}{'samples/s':>11}{'mm_frac':>9}{'work_frac':>10}"
        f"{'vs dense':>9}",
        flush=True,
    )
    for d, n, names, paths in GRIDS[args.grid]:
        names = [w for w in names if wanted is None or w in wanted]
        paths = [p for p in paths if not (args.no_dense and p == "dense")]
        for spec, active in ((s, a) for a in states for s in specs_for(d, n, names)):
            result = run_spec(
                spec,
                paths,
                batch,
                device,
                args.dtype == "bf16",
                args.rounds,
                args.steps,
                args.warmup,
                backends,
                encoder_backwards,
                fractions,
                active,
                (False, True) if args.compile else (False,),
            )
            base = next((r["step_ms"] for r in result if r["path"] == "dense"), None)
            for r in result:
                r["speedup_vs_dense"] = base / r["step_ms"] if base else None
                rows.append(r)
                vs = f"{r['speedup_vs_dense']:.2f}x" if base else "-"
                print(
                    f"{r['config']:<28}{r['state']:<11}{d:>5}{n:>7}  {r['path']:<22}{r['step_ms']:>10.1f}{r['samples_per_s']:>11.0f}"
                    f"{r['mm_frac']:>9.2f}{r['work_frac']:>10.2f}{vs:>9}",
                    flush=True,
                )
    ratios = _matryoshka_over_topk(rows)
    for line in ratios:
        print(
            f"matryoshka / topk step ({line['d']}x{line['n']}, {line['state']}, {line['path']}): {line['ratio']:.2f}"
            + (
                f", / relu {line['over_relu']:.2f} (relu / topk {line['relu_over_topk']:.2f})"
                if line["over_relu"]
                else ""
            )
            + f"  [{line['config']}]"
        )
    write_json_atomic(
        args.out,
        {
            "benchmark": "training_step_dense_vs_sparse",
            "device": _device_name(device),
            "device_type": device.type,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "batch_size": batch,
            "dtype": args.dtype,
            "rounds": args.rounds,
            "steps_per_round": args.steps,
            "dense_band_fraction_default": bands.default_dense_fraction(device),
            "python": sys.version.split()[0],
            "rows": rows,
            "matryoshka_over_topk": ratios,
        },
    )
    print(f"wrote {args.out}")
    return 0


def _matryoshka_over_topk(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Step-time ratio of each Matryoshka row to the TopK row of the same size, state and path,
    and to the ReLU row (its own last level alone) when the grid has one."""

    def same(r: dict[str, Any], prefix: str) -> dict[str, Any] | None:
        key = (r["d"], r["n"], r["path"], r["state"])
        return next(
            (t for t in rows if t["config"].startswith(prefix) and (t["d"], t["n"], t["path"], t["state"]) == key), None
        )

    out = []
    for r in rows:
        top, relu = same(r, "topk"), same(r, "relu")
        if r["variant"] == "matryoshka" and top:
            out.append(
                {
                    "config": r["config"],
                    "state": r["state"],
                    "d": r["d"],
                    "n": r["n"],
                    "path": r["path"],
                    "ratio": r["step_ms"] / top["step_ms"],
                    "over_relu": r["step_ms"] / relu["step_ms"] if relu else None,
                    "relu_over_topk": relu["step_ms"] / top["step_ms"] if relu else None,
                }
            )
    return out


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    sys.exit(main())
