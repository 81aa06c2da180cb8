"""A Matryoshka SAE's training step along a real run: code density and step time per step.

The sparse step's cost follows how many latents are positive (on the CPU the nested levels are
clipped to the positives, msae.sae.bands), and that density changes as the SAE trains. This trains
a Matryoshka RW at the paper's nesting (64, 128, ..., n) on CLIP-like embeddings
(msae.synthetic.clip_like: anisotropic, offset; centred and scaled as `msae train` does) with
msae's own training step at the default learning rate, and records per step the positive
pre-activations per sample (mean and max over the batch) and the step's wall time.

    OMP_NUM_THREADS=2 python benchmarks/matryoshka_run.py [--epochs 10] [--compile --out PATH]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import step as msae_step  # noqa: E402  (benchmarks/step.py: the adapter to msae)

from msae.config.train import scaled_lr, train_config  # noqa: E402
from msae.io import write_json_atomic  # noqa: E402
from msae.runtime import configure_torch  # noqa: E402
from msae.sae.model import scale_factor  # noqa: E402
from msae.synthetic import clip_like  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--d", type=int, default=512)
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--samples", type=int, default=65536)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument(
        "--compile", action="store_true", help="the objective under torch.compile (its first steps compile)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "matryoshka_run.json")
    args = parser.parse_args(argv)
    configure_torch()
    d, n, batch = args.d, args.n, args.batch_size
    data = clip_like(d=d, n_images=args.samples, n_concepts=n // 4, n_distractors=10, seed=0)
    x = torch.from_numpy(data.images).float()
    x -= x.mean(0)
    x *= scale_factor(
        float(x.square().sum(1).mean()),
        d,
        train_config(variant="matryoshka", embeddings="-", out="-", expansion=n / d).scale_mode,
    )
    per_epoch = len(x) // batch
    steps = per_epoch * args.epochs
    spec = msae_step.specs_for(d, n, ["mat-rw"])[0]
    lr = scaled_lr(n, steps)
    run, model, _ = msae_step.msae_step_factory(
        spec, "sparse", torch.device("cpu"), False, None, "sparse", None, lr=lr, with_model=True, compiled=args.compile
    )
    log = []
    print(f"{'step':>5}{'active mean':>13}{'share':>8}{'active max':>12}{'step ms':>10}", flush=True)
    for i in range(steps):
        xb = x[(i % per_epoch) * batch : (i % per_epoch + 1) * batch]
        with torch.no_grad():
            positives = (model.pre_activation_processed(xb) > 0).sum(1).float()
        start = time.perf_counter()
        run(xb)
        ms = 1e3 * (time.perf_counter() - start)
        row = {"step": i, "step_ms": ms, "active_mean": positives.mean().item(), "active_max": positives.max().item()}
        log.append(row)
        if i % per_epoch == 0 or i == steps - 1:
            print(
                f"{i:>5}{row['active_mean']:>13.1f}{row['active_mean'] / n:>8.1%}{row['active_max']:>12.0f}{ms:>10.1f}",
                flush=True,
            )
    mean_ms = statistics.mean(r["step_ms"] for r in log)
    median_ms = statistics.median(r["step_ms"] for r in log)
    print(f"mean step {mean_ms:.1f} ms, median {median_ms:.1f} ms over {steps} steps (lr {lr:.2g})")
    write_json_atomic(
        args.out,
        {
            "benchmark": "matryoshka_step_along_a_run",
            "d": d,
            "n": n,
            "nesting": spec.ks,
            "batch_size": batch,
            "samples": len(x),
            "lr": lr,
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "compiled": args.compile,
            "mean_step_ms": mean_ms,
            "median_step_ms": median_ms,
            "steps": log,
        },
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
