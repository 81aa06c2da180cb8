"""Benchmark `msae evaluate`: seconds per metric family and peak memory on CLIP-sized data.

Synthetic CLIP-like embeddings (d = 512 by default, low-rank clusters + noise, 10 labelled classes)
and a Matryoshka SAE with n = 4096 latents by default (the paper's nesting 64 ... n; paths: dense,
sparse k=64 and the progressive grid 16, 32, ..., < n shared by every variant), weights random but
biased so ~20% of the dense latents fire, as a trained MSAE's dense path (so the progressive paths
at k >= the largest count of positive latents equal the dense one and reuse its work). CKNNA is
estimated on every block of 10,000 rows, as the paper. Each size runs in a fresh process so its
peak RSS is its own; `cpu_s` is the process's CPU time (on a shared machine wall time also counts
waiting).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/evaluate.py [--rows 100000 20000] [--threads 2]
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/evaluate.py --rows 10000 --d 768 --n-latents 24576

Prints a table and merges its runs into benchmarks/results/evaluate.json (replacing earlier runs of
the same size, shape and CKNNA cap). Beside it, two plain matmuls of the same shape timed in the
same process: the Gram matrix of one block of latents (10,000 x n) in bf16, the machine's yardstick
(CKNNA's time is also given in these units, comparable across releases), and the same Gram matrix
as the certified int8 search computes it where the CPU has int8 dot products (each code too dense
for a CSR product costs half of one per block: the search computes each block of the symmetric
kernel once).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "evaluate.json"
CLASSES, PROBE_ROWS = 10, 20000

CHILD = r"""
import json, resource, sys, time
import torch
from msae.config.evaluate import EvalOptions
from msae.evaluation import evaluate
from msae.runtime import configure_torch
from msae.sae import load
configure_torch(int(sys.argv[4]))
start = time.perf_counter()
sae = load(sys.argv[1])
res = evaluate(sae, EvalOptions(embeddings=sys.argv[2], probe_train=sys.argv[3], cknna_max_batches=int(sys.argv[5]) or None), progress=False)
wall = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_SELF)
# plain-matmul units: one latent Gram matrix of a block (10,000 x n) in bf16 (the yardstick), and
# as the int8 search computes it (every wide code's graph on every block costs at least half of it)
from msae.metrics.alignment import CHUNK_ELEMENTS, native_int8_cpu, quantize_up
block = torch.rand(10000, sae.config.n_latents)
step = CHUNK_ELEMENTS // len(block)
low = block.to(torch.bfloat16)
gram = time.perf_counter()
for s in range(0, len(block), step):
    low[s : s + step] @ low.T
gram = time.perf_counter() - gram
gram_int8 = None
if native_int8_cpu():
    codes = quantize_up(block)
    gram_int8 = time.perf_counter()
    for s in range(0, len(block), step):
        codes.kernel(slice(s, s + step), slice(0, len(block)))
    gram_int8 = time.perf_counter() - gram_int8
print(json.dumps({"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "seconds": res.seconds, "peak_rss_mb": usage.ru_maxrss / 1024,
                  "gram_s": gram, "gram_int8_s": gram_int8,
                  "dense": res.metrics["dense"], "sparse_fvu": res.metrics["sparse"]["fvu"], "lp_kl": res.metrics["lp_kl"]}))
"""


def _make_inputs(work: Path, rows: int, d: int, n_latents: int, seed: int = 0) -> tuple[Path, Path, Path]:
    import numpy as np
    import torch

    from msae import store
    from msae.sae import SparseAutoencoder, make_config, save

    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(64, d)) / 8
    centres = rng.normal(size=(CLASSES, 64))
    meta = {"model": "bench", "pretrained": "synthetic", "modality": "image", "dataset": "bench", "split": "eval"}

    def embeddings(n: int) -> tuple[np.ndarray, list[str]]:
        labels = rng.integers(0, CLASSES, size=n)
        x = (centres[labels] + rng.normal(size=(n, 64))) @ basis + 0.05 * rng.normal(size=(n, d)) + 0.2
        return x.astype(np.float32), [f"class{v}" for v in labels]

    x, labels = embeddings(rows)
    eval_path = store.write_embeddings(
        work / f"eval_{rows}.parquet", [f"e{i}" for i in range(rows)], x, meta, {"label": labels}
    )
    xt, lt = embeddings(PROBE_ROWS)
    train_path = store.write_embeddings(
        work / "train.parquet", [f"t{i}" for i in range(PROBE_ROWS)], xt, {**meta, "split": "train"}, {"label": lt}
    )
    torch.manual_seed(seed)
    model = SparseAutoencoder(make_config("matryoshka", d, n_latents / d))
    with torch.no_grad():
        model.W_dec.copy_(torch.nn.functional.normalize(torch.randn(n_latents, d), dim=1))
        model.W_enc.copy_(model.W_dec.T / d**0.5)
        mean = torch.tensor(x[:10000].mean(0))
        model.set_statistics(mean, 1.0 / float((torch.tensor(x[:10000]) - mean).norm(dim=1).mean() / d**0.5))
        a = model.pre_activation(torch.tensor(x[:2000]))
        model.b_enc.sub_(torch.quantile(a, 0.8, dim=0))  # ~20% of the dense latents fire
    sae_dir = save(model, work / "sae", {"final_dead_latents": 0})
    return sae_dir, eval_path, train_path


def _run(rows: int, threads: int, cknna_max_batches: int, d: int = 512, n_latents: int = 4096) -> dict:
    with tempfile.TemporaryDirectory(prefix="msae-bench-eval-") as tmp:
        sae_dir, eval_path, train_path = _make_inputs(Path(tmp), rows, d, n_latents)
        start = time.perf_counter()
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                CHILD,
                str(sae_dir),
                str(eval_path),
                str(train_path),
                str(threads),
                str(cknna_max_batches),
            ],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "OMP_NUM_THREADS": str(threads)},
        )
        if proc.returncode:
            raise SystemExit(proc.stderr)
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        out["process_s"] = time.perf_counter() - start
        out["rows"], out["d"], out["n_latents"] = rows, d, n_latents
        out["cknna_max_batches"] = cknna_max_batches or "all"
        return out


def _key(run: dict) -> tuple:
    """What identifies a run in the JSON (runs before --d/--n-latents existed were 512 x 4096)."""
    return (run["rows"], run.get("cknna_max_batches", "all"), run.get("d", 512), run.get("n_latents", 4096))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[20000, 100000], help="evaluation set sizes")
    parser.add_argument(
        "--cknna-max-batches",
        type=int,
        nargs="+",
        default=[0],
        help="per --rows entry (or one for all): CKNNA batches per path, 0 = all (the paper)",
    )
    parser.add_argument("--d", type=int, default=512, help="embedding width")
    parser.add_argument("--n-latents", type=int, default=4096, help="SAE latents")
    parser.add_argument(
        "--threads", type=int, default=2, help="torch threads (OMP_NUM_THREADS) of the evaluated process"
    )
    args = parser.parse_args()
    caps = args.cknna_max_batches * len(args.rows) if len(args.cknna_max_batches) == 1 else args.cknna_max_batches
    if len(caps) != len(args.rows):
        raise SystemExit("--cknna-max-batches: give one value or one per --rows entry")
    runs = [_run(rows, args.threads, cap, args.d, args.n_latents) for rows, cap in zip(args.rows, caps)]
    families = sorted({k for r in runs for k in r["seconds"]})
    print(f"{'d x n':16s}" + "".join(f"{r['d']:>6d}x{r['n_latents']:<5d}" for r in runs))
    print(f"{'rows':16s}" + "".join(f"{r['rows']:>12,d}" for r in runs))
    print(f"{'cknna batches':16s}" + "".join(f"{r['cknna_max_batches']!s:>12s}" for r in runs))
    for fam in families:
        print(f"{fam:16s}" + "".join(f"{r['seconds'].get(fam, 0.0):12.1f}" for r in runs))
    for r in runs:
        r["total_excl_probe_train_s"] = r["wall_s"] - r["seconds"].get("probe_train", 0.0)
    print(f"{'total-probe_train':16s}" + "".join(f"{r['total_excl_probe_train_s']:12.1f}" for r in runs))
    print(f"{'process CPU s':16s}" + "".join(f"{r.get('cpu_s', float('nan')):12.1f}" for r in runs))
    print(f"{'peak RSS (MB)':16s}" + "".join(f"{r['peak_rss_mb']:12.0f}" for r in runs))
    print(f"{'one Gram (s)':16s}" + "".join(f"{r['gram_s']:12.2f}" for r in runs))
    print(f"{'int8 Gram (s)':16s}" + "".join(f"{r.get('gram_int8_s') or float('nan'):12.2f}" for r in runs))
    print(f"{'cknna / Gram':16s}" + "".join(f"{r['seconds'].get('cknna', 0.0) / r['gram_s']:12.0f}" for r in runs))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(RESULTS.read_text())["runs"] if RESULTS.exists() else []
    measured = {_key(r) for r in runs}
    runs = [r for r in previous if _key(r) not in measured] + runs
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "msae evaluate, matryoshka (dense, sparse, k=16..<n), d x n per run (512 x 4096 unless given), cknna_batch=10000, probe train 20k rows",
                "machine": {
                    "platform": platform.platform(),
                    "processor": platform.processor(),
                    "threads": args.threads,
                    "note": "2 CPU cores, no GPU",
                },
                "runs": runs,
            },
            indent=2,
            sort_keys=True,
        )
        + "\n"
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
