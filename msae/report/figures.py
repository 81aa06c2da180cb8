"""The report's figures and their plot data: the sparsity/reconstruction Pareto plot (the paper's
central figure, on the user's runs) and the training curves.

The same long-format tables that draw the figures are written as CSV so DVC can plot them too.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from tqdm import tqdm  # noqa: E402

from msae.baselines.variant import Baseline  # noqa: E402
from msae.io import atomic_path  # noqa: E402
from msae.report.collect import RunResults  # noqa: E402

PARETO_COLUMNS = ["run", "source", "k", "l0_zero_fraction", "active", "fvu", "cs"]
CURVE_COLUMNS = ["run", "step", "loss", "fvu", "dead_fraction"]


def dense_is_own(run: RunResults) -> bool:
    """Whether the run's dense path (and top-k of it) is the model's own: every SAE, and the
    classic baselines whose coder is linear (PCA, ICA); k-means, OMP and NNLS codes are not."""
    kind = run.kind
    if not isinstance(kind, Baseline):
        return True
    return run.architecture is not None and kind.dense_is_coder(run.architecture.arch)


def pareto_frame(runs: Sequence[RunResults]) -> pd.DataFrame:
    """One row per plotted point: source 'progressive' (top-k of the dense latents, from
    progressive.csv), 'sparse' (the model's own activation) or 'dense' (ReLU over all latents);
    a classic baseline whose coder is not ReLU of its encoder has only its 'sparse' point."""
    rows: list[dict] = []
    for run in runs:
        own = dense_is_own(run)
        if run.progressive is not None and own:
            for rec in run.progressive.to_dict("records"):
                rows.append({"run": run.name, "source": "progressive", **{c: rec[c] for c in PARETO_COLUMNS[2:]}})
        for path in ("sparse", "dense") if own else ("sparse",):
            block = run.metrics.get(path)
            if isinstance(block, dict) and all(block.get(c) is not None for c in PARETO_COLUMNS[3:]):
                rows.append({"run": run.name, "source": path, "k": None, **{c: block[c] for c in PARETO_COLUMNS[3:]}})
    frame = pd.DataFrame(rows, columns=PARETO_COLUMNS)
    frame["k"] = frame["k"].astype("Int64")
    return frame


def curves_frame(runs: Sequence[RunResults]) -> pd.DataFrame:
    """Training logs of all runs stacked, with a `run` column (for DVC plots and the combined figure)."""
    parts = [run.train_log[CURVE_COLUMNS[1:]].assign(run=run.name) for run in runs if run.train_log is not None]
    if not parts:
        return pd.DataFrame(columns=CURVE_COLUMNS)
    return pd.concat(parts, ignore_index=True)[CURVE_COLUMNS]


def run_colors(runs: Sequence[RunResults]) -> dict[str, tuple]:
    """Distinct colours per run; grey is left out (the legend's style keys are drawn in grey)."""
    tab10 = plt.get_cmap("tab10").colors  # type: ignore[attr-defined]  # a ListedColormap
    palette = [c for i, c in enumerate(tab10) if i != 7] if len(runs) <= 9 else list(plt.get_cmap("tab20").colors)  # type: ignore[attr-defined]
    return {run.name: palette[i % len(palette)] for i, run in enumerate(runs)}


def save_figure(fig: plt.Figure, path: Path) -> Path:
    """Atomic, reproducible save (no date in SVG metadata, fixed SVG ids) so reruns give equal files."""
    fmt = path.suffix.lstrip(".")
    metadata = {"Date": None} if fmt == "svg" else {"Software": None}
    with plt.rc_context({"svg.hashsalt": "msae-report"}), atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=110, bbox_inches="tight", metadata=metadata)
    return path


def _use_log(ax: plt.Axes, axis: str, values: pd.Series) -> None:
    if len(values) and (values > 0).all():
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")


PARETO_AXES = {
    "l0_zero_fraction": "L0 (the paper's): fraction of zero latents per sample (↑ sparser)",
    "active": "active latents per sample (mean count, what SAE libraries call L0; log scale)",
    "fvu": "FVU: fraction of variance unexplained (log scale)",
    "cs": "CS: cosine(x, x̂)",
}


def pareto_figure(runs: Sequence[RunResults]) -> plt.Figure:
    """2×2: (L0 zero fraction, active count) × (FVU, CS). Matryoshka progressive curves bold, the other models'
    progressive curves thin and dashed; filled dots = own sparse activation, rings = dense path."""
    data = pareto_frame(runs)
    colors = run_colors(runs)
    fig, axes = plt.subplots(2, 2, figsize=(13, 9), constrained_layout=True)
    for row, y in enumerate(("fvu", "cs")):
        for col, x in enumerate(("l0_zero_fraction", "active")):
            ax = axes[row, col]
            for run in runs:
                points = data[data["run"] == run.name]
                prog = points[points["source"] == "progressive"]
                if len(prog):
                    bold = run.nested
                    ax.plot(
                        prog[x],
                        prog[y],
                        color=colors[run.name],
                        lw=2.2 if bold else 1.0,
                        ls="-" if bold else "--",
                        alpha=1.0 if bold else 0.55,
                        marker="o" if bold else None,
                        ms=3.5,
                        zorder=3 if bold else 2,
                    )
                for source, face in (("sparse", colors[run.name]), ("dense", "white")):
                    pt = points[points["source"] == source]
                    ax.scatter(
                        pt[x], pt[y], s=70, facecolors=face, edgecolors=colors[run.name], linewidths=1.8, zorder=4
                    )
            if x == "active":
                _use_log(ax, "x", data["active"])
            if y == "fvu":
                _use_log(ax, "y", data["fvu"])
            ax.set_xlabel(PARETO_AXES[x])
            ax.set_ylabel(PARETO_AXES[y])
            ax.grid(True, which="major", alpha=0.3)
    handles = [
        Line2D(
            [],
            [],
            color=colors[r.name],
            marker="o",
            lw=2.2 if r.nested else 1.0,
            ls="-" if r.nested else "--",
            label=f"{r.name}: {r.description}",
        )
        for r in runs
    ]
    handles += [
        Line2D([], [], color="gray", marker="o", ls="none", ms=8, label="own sparse activation"),
        Line2D(
            [],
            [],
            color="gray",
            marker="o",
            ls="none",
            ms=8,
            markerfacecolor="white",
            label="dense path (ReLU, all latents)",
        ),
        Line2D([], [], color="gray", lw=2.2, marker="o", ms=3.5, label="Matryoshka: top-k of dense latents, each k"),
        Line2D([], [], color="gray", lw=1.0, ls="--", alpha=0.55, label="other models: top-k of dense latents"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=9, frameon=False)
    fig.suptitle("Sparsity vs reconstruction: each Matryoshka model is one curve; single-k models are points")
    return fig


CURVE_AXES = {
    "loss": "training loss (per batch)",
    "fvu": "FVU on training batches (fraction)",
    "dead_fraction": "dead latents (fraction of all latents)",
}


def curves_figure(runs: Sequence[RunResults], title: str, colors: dict[str, tuple] | None = None) -> plt.Figure:
    """Loss, FVU and dead fraction against the training step, one line per run (a run keeps its
    colour from the combined figure when `colors` is passed)."""
    colors = colors or run_colors(runs)
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8), constrained_layout=True)
    logged = [(r, r.train_log) for r in runs if r.train_log is not None]
    for ax, column in zip(axes, CURVE_AXES):
        for run, log in logged:
            ax.plot(log["step"], log[column], color=colors[run.name], lw=1.4, label=run.name)
        if column != "dead_fraction":
            _use_log(ax, "y", pd.concat([log[column] for _, log in logged]) if logged else pd.Series(dtype=float))
        ax.set_xlabel("training step")
        ax.set_ylabel(CURVE_AXES[column])
        ax.grid(True, alpha=0.3)
    axes[-1].set_ylim(bottom=0)
    fig.legend(
        handles=[Line2D([], [], color=colors[r.name], lw=1.6, label=r.name) for r, _ in logged],
        loc="outside lower center",
        ncol=min(len(logged), 5),
        fontsize=9,
        frameon=False,
    )
    fig.suptitle(title)
    return fig


def write_figures(runs: Sequence[RunResults], out: Path) -> dict[str, Path]:
    """pareto.png/.svg, curves.png (all runs) and curves/<run>.png; returns what was written."""
    written: dict[str, Path] = {}
    fig = pareto_figure(runs)
    for suffix in ("png", "svg"):
        written[f"pareto.{suffix}"] = save_figure(fig, out / f"pareto.{suffix}")
    plt.close(fig)
    logged = [r for r in runs if r.train_log is not None]
    colors = run_colors(runs)
    if logged:
        fig = curves_figure(logged, "Training curves, all runs", colors)
        written["curves.png"] = save_figure(fig, out / "curves.png")
        plt.close(fig)
    for run in tqdm(logged, desc="report: training curves", unit="run", leave=False):
        fig = curves_figure([run], f"Training curves: {run.name} ({run.description})", colors)
        written[f"curves/{run.name}.png"] = save_figure(fig, out / "curves" / f"{run.name}.png")
        plt.close(fig)
    return written
