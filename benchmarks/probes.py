"""Probe benchmark: the bias analysis's closed-form scoring against decoding every edit, and the
throughput of concept-controlled similarity search (random SAE and embeddings).

Bias: for a linear classifier, logit(x + δ·atom) = logit(x) + δ·(w·atom), so all candidates are
scored with one product (`intervention_effects`). The reference path edits the dense latents,
decodes them with the SAE (x + decode(z') − decode(z)) and scores x' per candidate, as a naive
implementation would. Both run in this process on the same data; the table shows seconds per
candidate and their agreement.

Similarity: `search` on Q queries × C concepts × A strengths over a store of N items (including
the store's encoding for the strength scale).

    OMP_NUM_THREADS=1 python benchmarks/probes.py [--store 10000 --test 4000 --dim 512 --latents 2048]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=int, default=10000, help="similarity store size")
    parser.add_argument("--test", type=int, default=4000, help="bias test-set size")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--latents", type=int, default=2048)
    parser.add_argument("--candidates", type=int, default=256, help="candidates scored in closed form")
    parser.add_argument("--decoded", type=int, default=16, help="candidates scored by decoding (slow path)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "probes.json")
    args = parser.parse_args()

    import numpy as np
    import pandas as pd
    import torch

    from msae.io import write_json_atomic
    from msae.probes import similarity as sim
    from msae.probes.bias import LinearProbe, intervention_effects
    from msae.probes.concepts import Concept
    from msae.probes.intervention import dense_columns, raw_atoms
    from msae.runtime import configure_torch, resolve_device, seed_everything
    from msae.sae import SparseAutoencoder, make_config
    from msae.store import EmbeddingSet

    configure_torch()
    seed_everything(0)
    device = resolve_device(args.device)
    sae = SparseAutoencoder(make_config("relu", args.dim, args.latents / args.dim, l1=0.0)).to(device).eval()
    rng = np.random.default_rng(0)
    rows = []

    # --- bias: closed form vs decoding every edit
    x = rng.normal(size=(args.test, args.dim)).astype(np.float32)
    probe = LinearProbe(weight=rng.normal(size=args.dim) / np.sqrt(args.dim), bias=0.0)
    latents = list(range(args.candidates))
    groups = {"all": np.ones(args.test, dtype=bool)}
    t0 = time.perf_counter()
    z = dense_columns(sae, x, latents)
    t_encode = time.perf_counter() - t0
    t0 = time.perf_counter()
    fast = intervention_effects(probe, x, z, raw_atoms(sae, latents), "set", np.zeros(len(latents)), groups)
    t_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    slow_dp = []
    with torch.no_grad():
        xt = torch.as_tensor(x, device=device)
        z_full = sae.encode_dense(xt)
        base = sae.decode(z_full)
        p = probe.proba(x)
        for latent in latents[: args.decoded]:
            z_new = z_full.clone()
            z_new[:, latent] = 0
            x_new = (xt + sae.decode(z_new) - base).cpu().numpy()
            slow_dp.append(float((probe.proba(x_new) - p).mean()))
    t_slow = time.perf_counter() - t0
    agree = float(np.max(np.abs(np.asarray(slow_dp) - fast["all"]["dp"][: args.decoded])))
    rows.append(
        {
            "task": "bias",
            "method": "closed form (intervention_effects)",
            "candidates": args.candidates,
            "items": args.test,
            "seconds": t_fast,
            "ms_per_candidate": 1e3 * t_fast / args.candidates,
            "encode_seconds": t_encode,
        }
    )
    rows.append(
        {
            "task": "bias",
            "method": "decode every edit",
            "candidates": args.decoded,
            "items": args.test,
            "seconds": t_slow,
            "ms_per_candidate": 1e3 * t_slow / args.decoded,
            "max_abs_dp_diff": agree,
        }
    )

    # --- similarity throughput
    store = EmbeddingSet(
        np.asarray([f"i{i}" for i in range(args.store)], dtype=object),
        rng.normal(size=(args.store, args.dim)).astype(np.float32),
        meta={},
        columns=pd.DataFrame(),
    )
    queries = sim.Queries.from_store(store, list(store.ids[:16]))
    concepts = [Concept(j, f"latent{j}") for j in range(3)]
    alphas = [0.0, 0.5, 1.0, 2.0, 4.0]
    t0 = time.perf_counter()
    sim.search(sae, store, queries, concepts, alphas, top=8)
    t_sim = time.perf_counter() - t0
    searches = len(queries.names) * (1 + len(concepts) * len(alphas))
    rows.append(
        {
            "task": "similarity",
            "method": "search (incl. store encode)",
            "items": args.store,
            "seconds": t_sim,
            "searches": searches,
            "searches_per_s": searches / t_sim,
        }
    )

    print(f"device {device}, d={args.dim}, n={args.latents}")
    print(f"{'task':<11}{'method':<38}{'items':>7}{'seconds':>10}  detail")
    for r in rows:
        detail = (
            f"{r['ms_per_candidate']:.2f} ms/candidate"
            if "ms_per_candidate" in r
            else f"{r['searches_per_s']:.1f} searches/s"
        )
        if "max_abs_dp_diff" in r:
            detail += f", max |Δp diff| vs closed form {r['max_abs_dp_diff']:.1e}"
        print(f"{r['task']:<11}{r['method']:<38}{r['items']:>7}{r['seconds']:>10.3f}  {detail}")
    speedup = rows[1]["ms_per_candidate"] / rows[0]["ms_per_candidate"]
    print(f"closed form is {speedup:.0f}x faster per candidate")
    write_json_atomic(
        args.out,
        {"device": str(device), "dim": args.dim, "latents": args.latents, "rows": rows, "closed_form_speedup": speedup},
    )


if __name__ == "__main__":
    main()
