"""Naming benchmark: 32k latents against a 50k-term vocabulary (random data, d=512), in blocks.

Each configuration runs in its own process so its peak memory (max RSS) is its own. Reported:
seconds for ranking the terms of every latent (`rank_terms`) and for fitting the valid-concept
rule's in-span null (`fit_null`, 1000 random latents per family, against 20k image embeddings),
peak RSS, and peak RSS above the inputs (SAE + term matrix).
Writes benchmarks/results/concepts.json.

    OMP_NUM_THREADS=1 python benchmarks/concepts.py [--latents 32768 --terms 50000 --dim 512]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

CONFIGS = [
    {"method": "decoder", "budget": 1 << 23},
    {"method": "decoder", "budget": 1 << 25},
    {"method": "activation", "budget": 1 << 25},
]


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_one(method: str, budget: int, latents: int, terms: int, dim: int, device: str) -> dict:
    import numpy as np
    import torch

    from msae.concepts.naming import rank_terms
    from msae.concepts.null import fit_null
    from msae.runtime import configure_torch, resolve_device
    from msae.sae import SparseAutoencoder, make_config

    configure_torch()
    torch.manual_seed(0)
    dev = resolve_device(device)
    sae = SparseAutoencoder(make_config("topk", dim, latents / dim, k=32)).to(dev).eval()
    vocab = np.random.default_rng(0).normal(size=(terms, dim)).astype(np.float32)
    images = np.random.default_rng(1).normal(size=(20000, dim)).astype(np.float32)
    base = _peak_mib()
    t0 = time.perf_counter()
    ranking = rank_terms(sae, vocab, method, "center", r=5, budget=budget)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t1 = time.perf_counter()
    fit_null(sae, vocab, images, method, "center", samples=1000, budget=budget)
    t2 = time.perf_counter()
    assert ranking.terms.shape == (latents, 5)
    return {
        "method": method,
        "budget_elements": budget,
        "device": str(dev),
        "latents": latents,
        "terms": terms,
        "dim": dim,
        "rank_seconds": round(t1 - t0, 2),
        "null_seconds": round(t2 - t1, 2),
        "peak_rss_mib": round(_peak_mib(), 1),
        "peak_above_inputs_mib": round(_peak_mib() - base, 1),
        "block_mib": round(budget * 4 / 2**20, 1),
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latents", type=int, default=32768)
    parser.add_argument("--terms", type=int, default=50000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: method:budget
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "concepts.json")
    args = parser.parse_args()
    if args.one:
        method, budget = args.one.split(":")
        print(json.dumps(run_one(method, int(budget), args.latents, args.terms, args.dim, args.device)))
        return
    rows = []
    for cfg in CONFIGS:
        cmd = [
            sys.executable,
            __file__,
            "--one",
            f"{cfg['method']}:{cfg['budget']}",
            "--latents",
            str(args.latents),
            "--terms",
            str(args.terms),
            "--dim",
            str(args.dim),
            "--device",
            args.device,
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
    header = f"{'method':<11}{'block MiB':>10}{'rank s':>9}{'null s':>9}{'peak RSS MiB':>14}{'above inputs':>14}"
    print(
        f"naming {args.latents} latents x {args.terms} terms, d={args.dim}, {rows[0]['device']}, {rows[0]['threads']} thread(s)"
    )
    print(header)
    for r in rows:
        print(
            f"{r['method']:<11}{r['block_mib']:>10}{r['rank_seconds']:>9}{r['null_seconds']:>9}"
            f"{r['peak_rss_mib']:>14}{r['peak_above_inputs_mib']:>14}"
        )
    full = args.latents * args.terms * 4 / 2**20
    print(f"(an unblocked score matrix would need {full:,.0f} MiB)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"results": rows, "unblocked_matrix_mib": round(full, 1)}, indent=2) + "\n")


if __name__ == "__main__":
    main()
