"""msae's TopK training step against the peer libraries' own TopK steps, side by side in one run.

Same synthetic data for everyone (d=512, n=4096, k=32, batch 4096, fp32, CPU by default): each
system's own module, optimizer and per-step maintenance (decoder renormalisation, gradient
projection, clipping) with its own default learning rate. Timing: `--rounds` interleaved rounds of
`--steps` timed steps after one warm-up step, median of the rounds' mean step time. With
`--fvu-samples S` each system then trains `--fvu-epochs` epochs (default 10) over S samples of a
planted sparse dataset (its own default lr) and reports held-out FVU = sum ||x - x_hat||^2 /
sum ||x - mean||^2.

Peers are imported if installed (`pip install eai-sparsify sae-lens dictionary-learning
overcomplete`); a missing or failing one is skipped with the reason printed. The official MSAE
code (github WolodjaZ/MSAE, MIT; not on PyPI) is read from `--official PATH` (its sae.py, loss.py).

    OMP_NUM_THREADS=2 python benchmarks/peers.py [--official PATH] [--fvu-samples 655360]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import step as msae_step  # noqa: E402  (benchmarks/step.py: the adapter to msae)

from msae.runtime import keep_freed_memory  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
Step = Callable[[torch.Tensor], object]
Reconstruct = Callable[[torch.Tensor], torch.Tensor]


def msae_system(
    path: str,
    d: int,
    n: int,
    k: int,
    total_steps: int,
    lr: float | None = None,
    fit_data: torch.Tensor | None = None,
    peer_recipe: bool = False,
) -> tuple[Step, Reconstruct]:
    """msae's TopK trained as `msae train` trains it: inputs centred and scaled by the statistics
    of `fit_data` (the first batch when None), the default learning rate for a run of
    `total_steps` (the scaled rule) or `lr`, and the default schedule (flat, then linear decay).
    `peer_recipe`: the same step and schedule with dictionary_learning's defaults instead (inputs
    centred but not scaled, encoder = the unit-norm decoder's transpose, MSE, its lr rule)."""
    from msae.config.train import scaled_lr, train_config
    from msae.sae.model import scale_factor
    from msae.train import lr_factor

    options = {"k": k, "loss": "mse"} if peer_recipe else {"k": k}
    spec = msae_step.Spec(f"topk k={k}", "topk", d, n, [k], [1.0], False, options)
    base_lr = (2e-4 / math.sqrt(n / 2**14) if peer_recipe else scaled_lr(n, total_steps)) if lr is None else lr
    run, model, optimizer = msae_step.msae_step_factory(
        spec, path, torch.device("cpu"), False, None, "sparse", None, lr=base_lr, with_model=True
    )
    if peer_recipe:
        with torch.no_grad():
            model.W_dec.div_(model.W_dec.norm(dim=1, keepdim=True))
            model.W_enc.copy_(model.W_dec.T)
    defaults = train_config(variant="topk", embeddings="-", out="-", expansion=n / d, epochs=1)  # one "epoch"
    state = {"step": 0}

    def step(x: torch.Tensor) -> None:
        if state["step"] == 0:
            stats = x if fit_data is None else fit_data
            mean = stats.mean(0)
            mean_sq = float((stats - mean).square().sum(1).mean())
            model.set_statistics(mean, 1.0 if peer_recipe else scale_factor(mean_sq, d, defaults.scale_mode))
        factor = lr_factor(min(state["step"], total_steps - 1), 0, total_steps, defaults)
        for group in optimizer.param_groups:
            group["lr"] = base_lr * factor
        run(model.preprocess(x))
        state["step"] += 1

    def reconstruct(x: torch.Tensor) -> torch.Tensor:
        z = torch.zeros(len(x), n).scatter_(1, *_topk_pair(model.pre_activation_processed(model.preprocess(x)), k))
        return model.postprocess(model.decode_processed(z))

    return step, reconstruct


def _topk_pair(a: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    v, i = a.topk(k, dim=1)
    return i, v.clamp_min(0)


def sparsify_system(d: int, n: int, k: int) -> tuple[Step, Reconstruct]:
    if not torch.cuda.is_available():
        os.environ.setdefault("SPARSIFY_DISABLE_TRITON", "1")  # its Triton decoder needs a GPU driver
    from schedulefree import ScheduleFreeWrapper
    from sparsify import SparseCoder, SparseCoderConfig
    from sparsify.sign_sgd import SignSGD

    sae = SparseCoder(d, SparseCoderConfig(num_latents=n, k=k))
    opt = ScheduleFreeWrapper(SignSGD([{"params": sae.parameters(), "lr": 5e-3 / math.sqrt(n / 2**14)}]), momentum=0.95)
    opt.train()
    state = {"step": 0}

    def step(x: torch.Tensor) -> None:
        if state["step"] == 0:
            sae.b_dec.data = x.mean(0)
        sae.set_decoder_norm_to_unit_norm()
        out = sae(x)
        out.fvu.backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        opt.step()
        opt.zero_grad()
        state["step"] += 1

    def reconstruct(x: torch.Tensor) -> torch.Tensor:
        opt.eval()
        out = sae(x).sae_out
        opt.train()
        return out

    return step, reconstruct


def dictionary_learning_system(d: int, n: int, k: int, total_steps: int) -> tuple[Step, Reconstruct]:
    from dictionary_learning.trainers.top_k import TopKTrainer

    warmup = min(1000, total_steps // 10)  # its defaults (1000 warm-up steps) assume a long run
    trainer = TopKTrainer(
        steps=total_steps,
        activation_dim=d,
        dict_size=n,
        k=k,
        layer=0,
        lm_name="synthetic",
        warmup_steps=warmup,
        threshold_start_step=warmup,
        device="cpu",
    )
    state = {"step": 0}

    def step(x: torch.Tensor) -> None:
        trainer.update(state["step"], x)
        state["step"] += 1

    return step, lambda x: trainer.ae(x)


def sae_lens_system(d: int, n: int, k: int) -> tuple[Step, Reconstruct]:
    from sae_lens.saes.sae import TrainStepInput
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig

    sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=d, d_sae=n, k=k, device="cpu"))
    opt = torch.optim.Adam(sae.parameters(), lr=3e-4, betas=(0.9, 0.999))
    state = {"step": 0}

    def step(x: torch.Tensor) -> None:
        out = sae.training_forward_pass(
            TrainStepInput(
                sae_in=x, coefficients={}, dead_neuron_mask=None, n_training_steps=state["step"], is_logging_step=False
            )
        )
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        state["step"] += 1

    return step, lambda x: sae.decode(sae.encode(x))


def overcomplete_system(d: int, n: int, k: int) -> tuple[Step, Reconstruct]:
    import matplotlib
    import matplotlib.cm

    if not hasattr(matplotlib.cm, "get_cmap"):  # overcomplete 0.3.0 imports a helper matplotlib 3.9 removed
        matplotlib.cm.get_cmap = matplotlib.colormaps.get_cmap  # type: ignore[attr-defined]
    from overcomplete.sae import TopKSAE
    from overcomplete.sae.losses import mse_l1

    model = TopKSAE(d, nb_concepts=n, top_k=k, device="cpu")
    opt = torch.optim.Adam(model.parameters(), lr=5e-4)

    def step(x: torch.Tensor) -> None:
        opt.zero_grad()
        z_pre, z, x_hat = model(x)
        loss = mse_l1(x, x_hat, z_pre, z, model.get_dictionary(), penalty=0.0)
        loss.backward()
        opt.step()

    return step, lambda x: model(x)[2]


def official_system(path: Path, d: int, n: int, k: int) -> tuple[Step, Reconstruct]:
    sys.path.insert(0, str(path))
    from loss import SAELoss  # type: ignore[import-not-found]
    from sae import Autoencoder, get_activation  # type: ignore[import-not-found]

    model = Autoencoder(n, d, activation=get_activation(f"TopK_{k}"), tied=False, normalize=False)
    loss_fn = SAELoss(reconstruction_loss="nmse", sparse_loss="l1", sparse_weight=0.0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=6.25e-10, weight_decay=0.0)

    def step(x: torch.Tensor) -> None:
        opt.zero_grad()
        recons_sparse, repr_sparse, _, _ = model(x)  # the shipped loop's TopK branch
        loss = loss_fn(recons_sparse, x, repr_sparse)[0]
        loss.backward()
        model.scale_to_unit_norm()
        model.project_grads_decode()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    return step, lambda x: model(x)[0]


def systems(
    d: int,
    n: int,
    k: int,
    total_steps: int,
    official: Path | None,
    msae_lrs: tuple[float, ...] = (),
    fit_data: torch.Tensor | None = None,
) -> dict[str, Callable[[], tuple[Step, Reconstruct]]]:
    table: dict[str, Callable[[], tuple[Step, Reconstruct]]] = {
        "msae TopK (sparse kernels)": lambda: msae_system("sparse", d, n, k, total_steps, fit_data=fit_data),
        "msae TopK (dense objective)": lambda: msae_system("dense", d, n, k, total_steps, fit_data=fit_data),
        "sparsify TopK": lambda: sparsify_system(d, n, k),
        "dictionary_learning TopK": lambda: dictionary_learning_system(d, n, k, total_steps),
        "sae-lens TopK": lambda: sae_lens_system(d, n, k),
        "overcomplete TopK": lambda: overcomplete_system(d, n, k),
    }
    table["msae TopK (dictionary_learning's recipe)"] = lambda: msae_system(
        "sparse", d, n, k, total_steps, fit_data=fit_data, peer_recipe=True
    )
    if official is not None:
        table["official MSAE TopK"] = lambda: official_system(official, d, n, k)
    for lr in msae_lrs:  # the same system at other learning rates (a sweep beside the default)
        table[f"msae TopK (sparse, lr {lr:g})"] = lambda lr=lr: msae_system(
            "sparse", d, n, k, total_steps, lr, fit_data
        )
    return table


def planted(samples: int, d: int, atoms: int, active: int, seed: int) -> torch.Tensor:
    """x = codes D + noise: `active` non-negative codes per sample over `atoms` unit directions."""
    g = torch.Generator().manual_seed(seed)
    dictionary = torch.randn(atoms, d, generator=g)
    dictionary /= dictionary.norm(dim=1, keepdim=True)
    idx = torch.rand(samples, atoms, generator=g).topk(active, dim=1).indices
    codes = torch.zeros(samples, atoms).scatter_(1, idx, torch.rand(samples, active, generator=g) + 0.5)
    return codes @ dictionary + 0.05 * torch.randn(samples, d, generator=g)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--d", type=int, default=512)
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--official", type=Path, default=None, help="folder holding the official MSAE sae.py, loss.py")
    parser.add_argument("--fvu-samples", type=int, default=0, help="training samples for the held-out FVU (0: skip)")
    parser.add_argument("--fvu-epochs", type=int, default=10, help="epochs over --fvu-samples before the held-out FVU")
    parser.add_argument("--msae-lrs", default="", help="comma list: also train msae TopK at these learning rates")
    parser.add_argument("--only", default="", help="comma list: run only the systems whose name contains one of these")
    parser.add_argument("--out", type=Path, default=RESULTS / "peers.json")
    args = parser.parse_args(argv)
    torch.set_flush_denormal(True)
    malloc_kept = keep_freed_memory()  # process-wide: every system below runs on the same allocator
    d, n, k, batch = args.d, args.n, args.k, args.batch_size
    torch.manual_seed(0)
    x = torch.randn(batch, d)
    ready: dict[str, Step] = {}
    skipped: dict[str, str] = {}
    for name, make in chosen_systems(args, 10**6).items():
        try:
            torch.manual_seed(0)
            ready[name] = make()[0]
            ready[name](x)  # warm-up step (also proves the step runs)
        except Exception as exc:  # noqa: BLE001 - a peer that cannot run is skipped, with its reason
            skipped[name] = f"{type(exc).__name__}: {str(exc)[:200]}"
            ready.pop(name, None)
            print(f"skip {name}: {skipped[name]}", flush=True)
    times = msae_step.interleaved(
        {name: (lambda s=s: s(x)) for name, s in ready.items()}, torch.device("cpu"), args.rounds, args.steps, 0
    )
    base = times.get("msae TopK (dense objective)")
    rows = []
    print(f"{'system':<32}{'samples/s':>11}{'vs msae dense':>15}")
    for name, seconds in sorted(times.items(), key=lambda t: t[1]):
        rows.append(
            {
                "system": name,
                "step_ms": 1e3 * seconds,
                "samples_per_s": batch / seconds,
                "vs_msae_dense": base / seconds if base else None,
            }
        )
        print(f"{name:<32}{batch / seconds:>11.0f}{(base / seconds if base else float('nan')):>15.2f}", flush=True)
    fvu = _fvu(args, skipped) if args.fvu_samples else {}
    from msae.io import write_json_atomic

    write_json_atomic(
        args.out,
        {
            "benchmark": "peers_topk_step",
            "d": d,
            "n": n,
            "k": k,
            "batch_size": batch,
            "dtype": "fp32",
            "device": "cpu",
            "threads": torch.get_num_threads(),
            "malloc_keeps_freed_memory": malloc_kept,
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "rounds": args.rounds,
            "steps_per_round": args.steps,
            "torch": torch.__version__,
            "rows": rows,
            "skipped": skipped,
            "fvu_samples": args.fvu_samples,
            "fvu_epochs": args.fvu_epochs,
            "heldout_fvu": fvu,
        },
    )
    print(f"wrote {args.out}")
    return 0


def chosen_systems(
    args: argparse.Namespace, total_steps: int, fit_data: torch.Tensor | None = None
) -> dict[str, Callable[[], tuple[Step, Reconstruct]]]:
    """The systems table for these arguments, filtered by --only."""
    lrs = tuple(float(v) for v in args.msae_lrs.split(",") if v)
    table = systems(args.d, args.n, args.k, total_steps, args.official, lrs, fit_data)
    wanted = [w for w in args.only.split(",") if w]
    return {name: make for name, make in table.items() if not wanted or any(w in name for w in wanted)}


def _fvu(args: argparse.Namespace, skipped: dict[str, str]) -> dict[str, float]:
    """Held-out FVU of each system after `fvu_epochs` epochs over `fvu_samples` planted samples."""
    d, n, batch = args.d, args.n, args.batch_size
    data = planted(args.fvu_samples + 8192, d, 2 * n, 8, seed=1)
    train, heldout = data[: args.fvu_samples], data[args.fvu_samples :]
    per_epoch = max(args.fvu_samples // batch, 1)
    steps = per_epoch * args.fvu_epochs
    out: dict[str, float] = {}
    for name, make in chosen_systems(args, steps, train).items():
        if name in skipped:
            continue
        torch.manual_seed(0)
        start = time.perf_counter()
        try:
            step, reconstruct = make()
            for i in range(steps):
                at = i % per_epoch
                step(train[at * batch : (at + 1) * batch])
            with torch.no_grad():
                x_hat = reconstruct(heldout)
        except Exception as exc:  # noqa: BLE001
            print(f"FVU {name}: failed ({type(exc).__name__}: {str(exc)[:200]})", flush=True)
            continue
        centred = heldout - heldout.mean(0)
        out[name] = float((heldout - x_hat).square().sum() / centred.square().sum())
        print(f"FVU {name:<32}{out[name]:.3f}  ({time.perf_counter() - start:.0f} s)", flush=True)
    return out


if __name__ == "__main__":
    sys.exit(main())
