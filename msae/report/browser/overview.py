"""The browser's "Compare runs" view: the comparison tables after a plain-language note on the two
ways to read an SAE, the Pareto plot, a readable concepts table and the probe figures, each with
a title that says what it shows. Written once as static HTML (every data string escaped here);
figures are copied next to it so the browser folder stands alone.
"""

from __future__ import annotations

import html
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from msae.io import atomic_path
from msae.report.collect import RunResults
from msae.report.table import DENSE_COLUMNS, DENSE_NOTE, SPARSE_COLUMNS, SPARSE_NOTE, to_html

PATHS_NOTE = (
    "Every SAE here can be read in two ways. The sparse path is the model as it is meant to be used: "
    "its own activation keeps a few latents per image (TopK keeps its k largest, BatchTopK and JumpReLU "
    "keep those above a learned threshold, Matryoshka keeps the top k of its smallest level, ReLU keeps "
    "every positive one). The dense path switches on every latent with a positive pre-activation; it is "
    "what the paper's Table 1 reports. A Matryoshka SAE is trained to reconstruct well at every number of "
    "active latents, so it does well on both paths. A TopK or BatchTopK SAE only ever learned to work with "
    "its k latents on: with all of them on, its reconstruction overshoots, and a dense-path FVU above 1 "
    "(e.g. 2 to 7, more error than the embedding's own variance) is expected, not a broken model. Judge "
    "such models by their sparse-path row first."
)
PARETO_NOTE = (
    "Lower FVU and higher CS mean a better reconstruction; further right means fewer latents per image. "
    "Each Matryoshka model is one bold curve: its reconstruction when only its k largest latents are kept, "
    "for every k. The other models' thin dashed curves are the same experiment, which they were not trained "
    "for. Filled dots: each model's own sparse activation; rings: its dense path."
)
SIMILARITY_NOTE = (
    "Each concept is written into query images at increasing strength (x axis); left: the share of the "
    "edited query's nearest neighbours that show the concept (it should rise to 1); right: the share that "
    "keep the query's other attributes (it should stay high). Coloured lines: the concepts in the legend."
)
STRIP_NOTE = (
    "Rows: the nearest neighbours of one query image as the concept is added more strongly; "
    "green frame: the neighbour has the concept."
)
BIAS_NOTE = (
    "A classifier is trained on images where the planted spurious attribute goes with the target class; each "
    "bar is the change of its prediction when one concept is removed from the test images (left) and how "
    "many predictions flip (right, per group in the legend). The spurious concept is drawn in red."
)
CONCEPTS_CAPTION = "Concepts each run found (valid = the name passed the validity rule)"
CONCEPT_HEADERS = (
    ("alive_latents", "alive latents", "latents that fire on at least one image"),
    ("valid_concepts", "valid concepts", "latents whose name passed all three checks of the validity rule"),
    ("unique_valid_names", "distinct names", "different names among the valid concepts"),
    (
        "named_precision",
        "name precision",
        "valid latents named by a world attribute value: share of their top images that have it",
    ),
)


def _esc(value: object) -> str:
    return html.escape(str(value))


def _figure(src: str, title: str, alt: str, note: str = "") -> str:
    """A titled figure that opens full size when clicked."""
    caption = f"<figcaption>{_esc(note)}</figcaption>" if note else ""
    return (
        f'<figure><p class="fig-title">{_esc(title)}</p><a href="{_esc(src)}"><img src="{_esc(src)}" '
        f'alt="{_esc(alt)}" loading="lazy"></a>{caption}</figure>'
    )


def _copy_figure(src: Path, out: Path, name: str, written: list[Path]) -> str:
    """Copy a figure to `out`/figures/`name`, record it, return its link relative to `out`."""
    dst = out / "figures" / name
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    written.append(dst)
    return f"figures/{name}"


def _concepts_table(runs: Sequence[RunResults], browse: Mapping[str, int]) -> str:
    """One readable row per run instead of the summary's snake_case keys."""
    attributes = sorted(
        {
            k[len("coverage_") :]
            for r in runs
            if r.concepts
            for k in r.concepts
            if k.startswith("coverage_") and k != "coverage_mean"
        }
    )
    head = "".join(f'<th title="{_esc(tip)}">{_esc(label)}</th>' for _, label, tip in CONCEPT_HEADERS)
    head += "".join(
        f'<th title="share of the {_esc(a)} values named by a valid latent">{_esc(a)} covered</th>' for a in attributes
    )
    rows = []
    for run in runs:
        if not run.concepts:
            continue
        cells = []
        for key, _, _ in CONCEPT_HEADERS:
            value = run.concepts.get(key)
            cells.append("–" if value is None else f"{100 * value:.0f}%" if key == "named_precision" else str(value))
        cells += [
            "–" if run.concepts.get(f"coverage_{a}") is None else f"{100 * run.concepts[f'coverage_{a}']:.0f}%"
            for a in attributes
        ]
        link = f' <a href="#concepts?run={browse[run.name]}&amp;valid=yes">browse</a>' if run.name in browse else ""
        label = f'{_esc(run.name)}{link}<br><span class="desc">{_esc(run.description)}</span>'
        rows.append(f'<tr><th scope="row">{label}</th>' + "".join(f"<td>{_esc(c)}</td>" for c in cells) + "</tr>")
    if not rows:
        return "<p>No concepts results were given (msae concepts).</p>"
    return (
        f'<table class="results"><caption>{_esc(CONCEPTS_CAPTION)}</caption>'
        f"<thead><tr><th>run</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


PROBE_KINDS = (  # (kind, title, note)
    ("curves", "Can a concept be dialled into an image search?", SIMILARITY_NOTE),
    ("strip", "What the nearest neighbours look like as a concept is added", STRIP_NOTE),
    ("bias", "Which concepts does a biased classifier rely on?", BIAS_NOTE),
)


def _probe_figures(kind: str, run: RunResults) -> list[tuple[Path, str]]:
    """The run's figures of one probe kind, with a suffix for their title (the strip's concept)."""
    similarity, bias = run.probe_dirs.get("similarity"), run.probe_dirs.get("bias")
    if kind == "curves" and similarity is not None and (similarity / "curves.png").is_file():
        return [(similarity / "curves.png", "")]
    if kind == "strip" and similarity is not None:
        strips = sorted((similarity / "strips").glob("*__*.png"))  # QUERY__CONCEPT.png
        return [(strips[0], f" · “{strips[0].stem.rsplit('__', 1)[-1]}”")] if strips else []
    if kind == "bias" and bias is not None and (bias / "bias.png").is_file():
        return [(bias / "bias.png", "")]
    return []


def _probes(runs: Sequence[RunResults], out: Path) -> tuple[str, list[Path]]:
    """One block per probe kind (explained once), the runs side by side in it."""
    parts: list[str] = []
    written: list[Path] = []
    for kind, title, note in PROBE_KINDS:
        figures = [
            _figure(
                _copy_figure(src, out, f"{kind}-run-{i:03d}.png", written),
                f"{run.name}{suffix}",
                f"{title} ({run.name})",
                run.description,
            )
            for i, run in enumerate(runs)
            for src, suffix in _probe_figures(kind, run)
        ]
        if figures:
            parts.append(
                f'<h3>{_esc(title)}</h3><p class="lead">{_esc(note)}</p>'
                f'<div class="probe-grid">{"".join(figures)}</div>'
            )
    return ("".join(parts) or "<p>No probe results were given (msae probe similarity | bias).</p>"), written


def overview_html(
    runs: Sequence[RunResults], out: Path, figures: Mapping[str, Path], browse: Mapping[str, int]
) -> tuple[str, list[Path]]:
    """The Compare view's HTML and the figure files it copied into `out`/figures."""
    written: list[Path] = []
    body = [
        "<h2>How the runs compare</h2>",
        f'<p class="lead">{_esc(PATHS_NOTE)}</p>',
        to_html(runs, SPARSE_COLUMNS, "Sparse path: each model with its own activation (as it is used)"),
        f'<p class="note">{_esc(SPARSE_NOTE)}</p>',
        to_html(runs, DENSE_COLUMNS, "Dense path: every positive latent on (the paper's Table 1)"),
        f'<p class="note">{_esc(DENSE_NOTE)} Hover a column header for its meaning.</p>',
    ]
    pareto = figures.get("pareto.png")
    if pareto is not None and pareto.is_file():
        src = _copy_figure(pareto, out, "pareto.png", written)
        body += [
            "<h2>Sparsity against reconstruction</h2>",
            _figure(
                src,
                "How well each model reconstructs the embedding for how many active latents",
                "Pareto plot of all runs",
                PARETO_NOTE,
            ),
        ]
    body += ["<h2>Concepts</h2>", _concepts_table(runs, browse)]
    probes, copied = _probes(runs, out)
    written += copied
    body += ["<h2>Probes</h2>", probes]
    return "\n".join(body), written
