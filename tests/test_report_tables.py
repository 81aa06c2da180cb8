"""The report's tables beyond Table 1's numbers: which L0 is which, LP(KL) that tells runs apart,
the stability column, Table 2 (training modality), mean ± std over seeds and the bias contrast,
each read back from the Markdown and checked against the inputs with numpy."""

from __future__ import annotations

import re

import numpy as np
import pytest

from msae.report.collect import RunResults
from msae.report.table import (
    DENSE_COLUMNS,
    SPARSE_COLUMNS,
    build_rows,
    format_number,
    seed_summary,
    tables,
    tables_html,
    tables_markdown,
)
from msae.sae.architecture import SAEConfig

NUMBER = r"-?\d*\.?\d+(?:e[-+]?\d+)?"


def _block(rng: np.random.Generator) -> dict[str, float]:
    return {
        "l0_zero_fraction": float(rng.uniform(0.5, 0.99)),
        "l0_zero_fraction_std": float(rng.uniform(0, 0.05)),
        "active": float(rng.uniform(2, 60)),
        "active_std": float(rng.uniform(0, 3)),
        "fvu": float(rng.uniform(0.001, 0.3)),
        "fvu_std": float(rng.uniform(0, 0.05)),
        "cs": float(rng.uniform(0.8, 1.0)),
        "cs_std": float(rng.uniform(0, 0.05)),
        "cknna": float(rng.uniform(0.5, 0.9)),
        "cknna_std": float(rng.uniform(0.001, 0.01)),
    }


def _metrics(rng: np.random.Generator, variant: str) -> dict:
    return {
        "variant": variant,
        "n_latents": 64,
        "dense": _block(rng),
        "sparse": _block(rng),
        "lp_kl": float(rng.uniform(1e-4, 5e-3)),  # the world's LP(KL): 0.00 at the paper's precision
        "lp_kl_std": float(rng.uniform(1e-4, 5e-3)),
        "lp_agree": float(rng.uniform(0.99, 1.0)),
        "do": 0.01,
        "ndn": 0,
        "ndn_train": int(rng.integers(0, 9)),
        "ndn_sparse": 3,
    }


def _run(name: str, variant: str, rng: np.random.Generator, **arch) -> RunResults:
    config = {"variant": variant, "d": 32, "n_latents": 64, **arch}
    run = RunResults(name=name, metrics=_metrics(rng, variant), config={**config, "data": {"modality": "image"}})
    run.architecture = SAEConfig.from_dict(config)
    return run


@pytest.fixture()
def runs() -> list[RunResults]:
    rng = np.random.default_rng(0)
    topk = _run("topk_k8", "topk", rng, k=8)
    topk.seed_metrics = {"1": _metrics(rng, "topk"), "2": _metrics(rng, "topk")}
    topk.stability = {"mean_cosine": 0.81, "mean_cosine_std": 0.02, "fraction_above": 0.66, "fraction_above_std": 0.03}
    image = _run("msae_rw", "matryoshka", rng, nesting=[8, 64], weighting="rw", inner="topk")
    text = _run("msae_text", "matryoshka", rng, nesting=[8, 64], weighting="rw", inner="topk")
    text.config["data"] = {"modality": "text"}  # type: ignore[index]
    for run in (image, text):
        run.cross_modal = {"text_test": {"dense": _block(rng)}}
    for run in (topk, image):
        run.probes = {
            "bias": {"spurious_rank": 1.0, "spurious_flip_rate": 0.02, "spurious_flip_rate_anti": 0.098,
                     "spurious_effect_vs_top": 1.0, "spurious_train_gap": 0.85},
            "bias_control": {"spurious_rank": 3.0, "spurious_flip_rate": 0.014, "spurious_flip_rate_anti": 0.008,
                             "spurious_effect_vs_top": 0.76, "spurious_train_gap": -0.008},
        }  # fmt: skip
    baseline = _run("baseline-pca4", "baseline", rng, method="pca", components=4)
    return [topk, image, text, baseline]


def _tables(text: str) -> dict[str, dict[str, dict[str, str]]]:
    """{heading: {run: {header: cell}}} parsed from table.md without the writer's code."""
    out, heading, header = {}, None, None
    for line in text.splitlines():
        if line.startswith("## "):
            heading, header = line[3:], None
            out[heading] = {}
        elif line.startswith("|") and heading is not None:
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            if header is None:
                header = cells
            elif not set(line) <= set("|-: "):
                out[heading][cells[0].split(" · ")[0]] = dict(zip(header[1:], cells[1:]))
    return out


def _numbers(cell: str) -> list[float]:
    return [float(x) for x in re.findall(NUMBER, cell.strip("*"))]


def test_headers_say_which_l0_is_which_and_baselines_leave_the_dense_table(runs):
    parsed = _tables(tables_markdown(runs))
    dense, sparse = parsed["Dense path (the paper's Table 1)"], parsed["Sparse path"]
    assert "baseline-pca4" not in dense and "baseline-pca4" in sparse
    for table in (dense, sparse):
        assert {"L0 (zero frac.) ↑", "Active (count) ↓"} <= set(next(iter(table.values())))
    text = tables_markdown(runs)
    assert "fraction of latents that are zero" in text and "what most SAE libraries call L0" in text
    assert [c.header for c in SPARSE_COLUMNS][:2] == ["L0 (zero frac.)", "Active (count)"]
    assert "msae_text · Matryoshka (RW, n = 64) · trained on text" in text
    runs[2].config["data"] = {"modality": "both"}  # type: ignore[index]
    assert "msae_text · Matryoshka (RW, n = 64) · trained on image+text" in tables_markdown(runs)


def test_lp_kl_below_the_papers_precision_tells_runs_apart(runs):
    dense = _tables(tables_markdown(runs))["Dense path (the paper's Table 1)"]
    for run in runs[:3]:
        mean, std = _numbers(dense[run.name]["LP(KL) ↓"])
        assert mean == pytest.approx(run.metrics["lp_kl"], rel=0.05) and "e-0" in dense[run.name]["LP(KL) ↓"]
        assert std == pytest.approx(run.metrics["lp_kl_std"], rel=0.05)
    assert len({dense[r.name]["LP(KL) ↓"].split(" ± ")[0].strip("*") for r in runs[:3]}) == 3
    assert format_number(0.00066, "nats") == "6.6e-04" and format_number(0.66, "nats") == "0.66"
    assert format_number(0.0002, "nats", 2, like=0.00066) == "2.0e-04"  # a std takes its mean's style
    assert format_number(0.0, "nats") == "0.00"


def test_stability_column_and_seeds_table_are_mean_and_std_over_seeds(runs):
    parsed = _tables(tables_markdown(runs))
    assert _numbers(parsed["Dense path (the paper's Table 1)"]["topk_k8"]["Stability ↑"]) == [0.66, 0.03]
    assert parsed["Dense path (the paper's Table 1)"]["msae_rw"]["Stability ↑"] == "–"
    seeds = parsed["Seeds: mean ± std over seeds and dictionary stability"]
    assert list(seeds) == ["topk_k8"]
    topk = runs[0]
    every = [topk.metrics, *topk.seed_metrics.values()]
    fvu = np.array([m["dense"]["fvu"] for m in every])
    mean, std = _numbers(seeds["topk_k8"]["FVU ↓"])
    assert mean == pytest.approx(fvu.mean(), abs=5e-4) and std == pytest.approx(fvu.std(ddof=1), abs=5e-4)
    assert _numbers(seeds["topk_k8"]["Seeds"]) == [3]
    assert _numbers(seeds["topk_k8"]["Shared@0.7 ↑"]) == [0.66, 0.03]
    summary = seed_summary(topk)
    assert summary is not None and summary["mean"]["lp_kl"] == pytest.approx(np.mean([m["lp_kl"] for m in every]))


def test_stability_headers_and_notes_state_the_threshold_the_runs_were_matched_at(runs):
    runs[0].stability = {**(runs[0].stability or {}), "threshold": 0.8}
    text = tables_markdown(runs)
    seeds = _tables(text)["Seeds: mean ± std over seeds and dictionary stability"]["topk_k8"]
    assert "Shared@0.8 ↑" in seeds and "above cosine 0.8" in text
    assert "0.7" not in text and "{threshold}" not in text and "{threshold}" not in tables_html(runs)


def test_table_two_puts_language_beside_vision_per_training_modality(runs):
    parsed = _tables(tables_markdown(runs))
    heading = next(h for h in parsed if h.startswith("Training modality"))
    assert "test captions" in heading
    table = parsed[heading]
    assert list(table) == ["msae_rw", "msae_text"]  # runs with a language evaluation
    for run in runs[1:3]:
        language, vision = run.cross_modal["text_test"]["dense"], run.metrics["dense"]
        assert _numbers(table[run.name]["Lang. FVU ↓"])[0] == pytest.approx(language["fvu"], abs=5e-4)
        assert _numbers(table[run.name]["Vis. CKNNA ↑"])[0] == pytest.approx(vision["cknna"], abs=5e-4)
        assert _numbers(table[run.name]["Vis. CKNNA ↑"])[1] == pytest.approx(vision["cknna_std"], abs=5e-4)
        assert _numbers(table[run.name]["NDN ↓"]) == [run.metrics["ndn_train"]]


def test_bias_table_puts_the_spurious_classifier_beside_the_control(runs):
    parsed = _tables(tables_markdown(runs))
    table = parsed["Planted bias: spurious vs control classifier"]
    assert list(table) == ["topk_k8", "msae_rw"]
    row = table["topk_k8"]
    assert row["Rank (spur.)"] == "1" and row["Rank (ctrl.)"] == "3"
    assert _numbers(row["Flip anti (spur.)"]) == [0.098] and _numbers(row["Flip anti (ctrl.)"]) == [0.008]
    assert _numbers(row["Train gap (spur.)"]) == [0.85] and _numbers(row["Train gap (ctrl.)"]) == [-0.008]
    assert "**" not in "".join(row.values())  # no "best" mark: a rank is evidence, not a score


def test_html_has_the_same_tables(runs):
    page = tables_html(runs)
    for table in tables(runs):
        assert f"<caption>{table.heading}</caption>" in page.replace("&#x27;", "'")
    assert page.count("<table") == len(tables(runs)) == 5  # Table 1, sparse, Table 2, seeds, bias


def test_a_table_without_rows_is_left_out(runs):
    plain = [runs[3]]  # only a baseline: no dense table, no seeds, no Table 2, no bias
    assert [t.heading for t in tables(plain)] == ["Sparse path"]
    rows = build_rows(runs[:1], DENSE_COLUMNS)
    assert rows[0][[c.header for c in DENSE_COLUMNS].index("Valid")].text == "–"
