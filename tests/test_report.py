"""msae report: built from fixture results in the documented formats (docs/internals.md), then
read back and checked against the fixture files with independent parsing and numpy."""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from msae.cli import main as cli_main
from msae.config.report import ReportConfig
from msae.errors import MsaeError
from msae.identity import IDENTITY_KEY, run_identity
from msae.layout import MODEL_FILE
from msae.report import build_report, load_runs
from msae.report.collect import RunResults
from msae.report.page import index_page
from msae.report.table import DENSE_COLUMNS, build_rows, format_number

RUNS = {  # name -> (variant, config extras)
    "relu_l1": ("relu", {"l1": 0.003}),
    "topk_k8": ("topk", {"k": 8}),
    "batchtopk_k8": ("batchtopk", {"k": 8}),
    "msae_rw": ("matryoshka", {"nesting": [8, 16, 32, 64, 128], "weighting": "rw", "inner": "topk"}),
}
N_LATENTS = 128
PATH_KEYS = (
    "l0_zero_fraction",
    "l0_zero_fraction_std",
    "active",
    "active_std",
    "fvu",
    "fvu_std",
    "fvu_dataset",
    "cs",
    "cs_std",
    "cknna",
    "cknna_std",
)


def _path_block(rng: np.random.Generator) -> dict[str, float]:
    l0 = float(rng.uniform(0.5, 0.99))
    return {
        "l0_zero_fraction": l0,
        "l0_zero_fraction_std": float(rng.uniform(0, 0.05)),
        "active": (1 - l0) * N_LATENTS,
        "active_std": float(rng.uniform(0, 3)),
        "fvu": float(rng.uniform(0.001, 0.3)),
        "fvu_std": float(rng.uniform(0, 0.05)),
        "fvu_dataset": float(rng.uniform(0.001, 0.3)),
        "cs": float(rng.uniform(0.8, 1.0)),
        "cs_std": float(rng.uniform(0, 0.05)),
        "cknna": float(rng.uniform(0.5, 0.9)),
        "cknna_std": float(rng.uniform(0, 0.01)),
    }


def make_results(root: Path, seed: int = 0, with_extras: bool = True) -> dict[str, dict]:
    """~4 runs of fake stage outputs; returns the metrics written, by run."""
    rng = np.random.default_rng(seed)
    written = {}
    for i, (name, (variant, extra)) in enumerate(RUNS.items()):
        sae = root / "sae" / name
        ev = root / "eval" / name
        sae.mkdir(parents=True)
        ev.mkdir(parents=True)
        (sae / "config.json").write_text(json.dumps({"variant": variant, "d": 32, "n_latents": N_LATENTS, **extra}))
        (sae / MODEL_FILE).write_bytes(f"tensors of {name}".encode())  # hashed, never loaded, by the report
        identity = {IDENTITY_KEY: {"sae": run_identity(sae)}}  # every result says which SAE it is of
        steps = np.arange(0, 200, 10)
        pd.DataFrame(
            {
                "step": steps,
                "epoch": steps // 100,
                "loss": np.exp(-steps / 80) + 0.01 * (i + 1),
                "fvu": np.exp(-steps / 60) * 0.5 + 0.01,
                "active": 8.0,
                "dead_fraction": np.linspace(0.0, 0.1 * i, len(steps)),
                "lr": 1e-3,
            }
        ).to_csv(sae / "train_log.csv", index=False)
        metrics = {
            "variant": variant,
            "n_latents": N_LATENTS,
            "n_eval": 500,
            "dense": _path_block(rng),
            "sparse": _path_block(rng),
            "do": float(rng.uniform(0.001, 0.02)),
            "ndn": int(rng.integers(0, 3)),
            "ndn_train": int(rng.integers(0, 40)),
            "ndn_sparse": int(rng.integers(0, 40)),
            "lp_kl": float(rng.uniform(0.1, 80)),
            "lp_kl_std": float(rng.uniform(0.1, 90)),
            "lp_agree": float(rng.uniform(0.9, 1)),
            "lp_agree_std": float(rng.uniform(0, 0.3)),
            "lp_acc_orig": 0.9,
            "lp_acc_recon": 0.85,
            "zeroshot_retained": float(rng.uniform(0.8, 1.0)),
            **identity,
        }
        if i != 1:  # one run without retrieval, as when no captions were given
            metrics["recall5_retained"] = float(rng.uniform(0.8, 1.0))
        (ev / "metrics.json").write_text(json.dumps(metrics))
        ks = extra.get("nesting", [16, 32, 64, 128])
        prog = pd.DataFrame([{**_path_block(rng), "k": k} for k in ks])
        prog["l0_zero_fraction"] = 1 - np.array(ks) / N_LATENTS
        prog["active"] = np.array(ks, dtype=float)
        prog["fvu"] = np.sort(prog["fvu"].to_numpy())[::-1]
        prog.to_csv(ev / "progressive.csv", index=False)
        written[name] = metrics
        if with_extras and i < 2:
            c = root / "concepts" / name
            (c / "galleries").mkdir(parents=True)
            (c / "summary.json").write_text(
                json.dumps(
                    {
                        "valid_concepts": 10 + 5 * i,
                        "named_precision": 0.9,
                        "coverage": {"color": 1.0, "shape": 0.5},
                        "vocab": "x",
                        **identity,
                    }
                )
            )
            (c / "index.html").write_text("<html><body>gallery</body></html>")
            for j in range(6):
                Image.new("RGB", (40, 30), (50 * j, 100, 150)).save(c / "galleries" / f"latent_{j:03d}.png")
        if with_extras and i == 3:
            for kind, png in (("similarity", "curves.png"), ("bias", "bias.png")):
                d = root / "probes" / name / kind
                d.mkdir(parents=True)
                (d / "summary.json").write_text(json.dumps({"score": 0.8, "rank_of_planted": 1, **identity}))
                Image.new("RGB", (60, 40), (200, 100, 50)).save(d / png)
            Image.new("RGB", (60, 20)).save(root / "probes" / name / "similarity" / "strip_q0.png")
    return written


def build(root: Path, **kwargs) -> dict[str, Path]:
    return build_report(
        ReportConfig(
            out=root / "report",
            eval=root / "eval",
            runs=root / "sae",
            concepts=root / "concepts",
            probes=root / "probes",
            **kwargs,
        )
    )


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    metrics = make_results(root)
    files = build(root)
    return root, metrics, files


# --- reading the table back ------------------------------------------------------------------


def parse_markdown_tables(text: str) -> dict[str, dict[str, dict[str, str]]]:
    """{section heading: {run: {column header: cell text}}}, parsed independently of the writer."""
    tables, heading, header = {}, None, None
    for line in text.splitlines():
        if line.startswith("## "):
            heading, header = line[3:], None
            tables[heading] = {}
        elif line.startswith("|") and heading:
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            if header is None:
                header = cells
            elif not set(line) <= set("|-: "):
                tables[heading][cells[0].split(" · ")[0]] = dict(zip(header[1:], cells[1:]))
    return tables


def parse_cell(text: str) -> tuple[bool, list[float]]:
    bold = text.startswith("**") and text.endswith("**")
    numbers = [float(x) for x in re.findall(r"-?\d*\.?\d+(?:e[-+]?\d+)?", text.strip("*"))]
    return bold, numbers


DENSE = {  # header -> (metrics path of mean, path of second number, decimals as printed, higher better)
    "L0 (zero frac.) ↑": (("dense", "l0_zero_fraction"), ("dense", "l0_zero_fraction_std"), 3, True),
    "FVU ↓": (("dense", "fvu"), ("dense", "fvu_std"), 3, False),
    "CS ↑": (("dense", "cs"), ("dense", "cs_std"), 3, True),
    "LP(KL) ↓": (("lp_kl",), ("lp_kl_std",), None, False),
    "LP(Acc) ↑": (("lp_agree",), ("lp_agree_std",), 3, True),
    "CKNNA ↑": (("dense", "cknna"), ("dense", "cknna_std"), 3, True),
    "DO ↓": (("do",), None, 3, False),
    "NDN ↓": (("ndn",), ("ndn_train",), 0, False),
    "Active (count) ↓": (("dense", "active"), ("dense", "active_std"), None, False),
    "ZS ret. ↑": (("zeroshot_retained",), None, 3, True),
    "R@5 ret. ↑": (("recall5_retained",), None, 3, True),
}
SPARSE = {
    "L0 (zero frac.) ↑": (("sparse", "l0_zero_fraction"), ("sparse", "l0_zero_fraction_std"), 3, True),
    "Active (count) ↓": (("sparse", "active"), ("sparse", "active_std"), None, False),
    "FVU ↓": (("sparse", "fvu"), ("sparse", "fvu_std"), 3, False),
    "CS ↑": (("sparse", "cs"), ("sparse", "cs_std"), 3, True),
    "CKNNA ↑": (("sparse", "cknna"), ("sparse", "cknna_std"), 3, True),
    "NDN ↓": (("ndn_sparse",), None, 0, False),
}


def get(metrics: dict, path: tuple[str, ...]):
    for p in path:
        if p not in metrics:
            return None
        metrics = metrics[p]
    return metrics


def paper_decimals(value: float) -> int:
    return 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2


@pytest.mark.parametrize("section,spec", [("Dense path (the paper's Table 1)", DENSE), ("Sparse path", SPARSE)])
def test_table_values_equal_metrics_and_best_is_marked(report, section, spec):
    root, metrics, _ = report
    table = parse_markdown_tables((root / "report" / "table.md").read_text())[section]
    assert list(table) == list(RUNS)
    for header, (key, second, decimals, higher) in spec.items():
        shown = {}
        for run, m in metrics.items():
            bold, numbers = parse_cell(table[run][header])
            expected = [v for v in (get(m, key), get(m, second) if second else None) if v is not None]
            if not expected:
                assert table[run][header] == "–"
                continue
            assert len(numbers) == len(expected), (run, header, table[run][header])
            places = paper_decimals(expected[0]) if decimals is None else decimals  # a std takes its mean's places
            for got, want in zip(numbers, expected):
                assert abs(got - want) <= 0.5 * 10**-places + 1e-12, (run, header, got, want)
            shown[run] = (bold, tuple(numbers if header.startswith("NDN") else numbers[:1]))
        # best per column from the raw metrics (numpy, independent of the writer's rounding code)
        raw = {run: get(metrics[run], key) for run in shown}
        best_raw = (max if higher else min)(raw, key=raw.get)
        assert shown[best_raw][0], (header, "the run with the best raw value must be marked")
        target = (max if higher else min)(v for _, v in shown.values())
        marked = {run for run, (bold, _) in shown.items() if bold}
        assert marked == {run for run, (_, v) in shown.items() if v == target}, header


def test_valid_concepts_column_reads_concepts_summary(report):
    root, _, _ = report
    table = parse_markdown_tables((root / "report" / "table.md").read_text())["Dense path (the paper's Table 1)"]
    assert table["relu_l1"]["Valid ↑"] == "10"
    assert table["topk_k8"]["Valid ↑"] == "**15**"
    assert table["msae_rw"]["Valid ↑"] == "–"


def test_html_table_marks_the_same_cells(report):
    root, _, _ = report
    page = (root / "report" / "table.html").read_text()
    md = (root / "report" / "table.md").read_text()
    assert page.count('class="best"') == md.count("**") // 2 > 0


class LinkCollector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("href", "src") and value:
                self.links.append(value)


def test_every_link_in_index_exists_and_page_is_offline(report):
    root, _, files = report
    out = root / "report"
    collector = LinkCollector()
    collector.feed((out / "index.html").read_text())
    local = [link for link in collector.links if not link.startswith("data:")]
    assert not [link for link in local if re.match(r"^[a-z]+://", link)], "no network links"
    from urllib.parse import unquote

    for link in local:
        assert (out / unquote(link)).resolve().is_file(), link
    joined = " ".join(local)
    for expected in (
        "table.md",
        "pareto.svg",
        "../concepts/relu_l1/index.html",
        "../probes/msae_rw/bias/bias.png",
        "../probes/msae_rw/similarity/curves.png",
        "curves/topk_k8.png",
    ):
        assert expected in joined, expected
    assert sum(link.startswith("data:image/png;base64,") for link in collector.links) == 2


def test_summary_json_is_flat_numbers_per_run(report):
    root, metrics, _ = report
    summary = json.loads((root / "report" / "summary.json").read_text())
    assert list(summary) == sorted(RUNS)
    for run, flat in summary.items():
        assert all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in flat.values())
        assert flat["dense_fvu"] == metrics[run]["dense"]["fvu"]
        assert flat["sparse_cs"] == metrics[run]["sparse"]["cs"]
        assert flat["ndn_train"] == metrics[run]["ndn_train"]
        assert flat["train_steps"] == 190
        assert flat["train_final_active"] == 8.0  # train_log.csv `active` (count), not the zero fraction
        assert flat["dense_l0_zero_fraction"] == metrics[run]["dense"]["l0_zero_fraction"]
        assert "variant" not in flat
    assert summary["relu_l1"]["concepts_valid_concepts"] == 10
    assert summary["relu_l1"]["concepts_coverage_shape"] == 0.5
    assert summary["msae_rw"]["bias_rank_of_planted"] == 1
    assert summary["msae_rw"]["similarity_score"] == 0.8


def test_index_says_which_l0_is_which_and_links_the_browser(report):
    root, _, files = report
    out = root / "report"
    page = (out / "index.html").read_text()
    assert "L0 (zero frac.)" in page and "what most SAE libraries call L0" in page  # which L0 is which
    assert "concept browser" not in page  # built without --images: no browser to link
    browser = out / "browser" / "index.html"
    loaded = load_runs(root / "eval", root / "sae")
    with_browser = index_page(loaded, out, {**files, "browser/index.html": browser})
    assert '<a href="browser/index.html">Open the concept browser</a>' in with_browser


def test_headline_per_run_is_all_dvc_compares(report):
    """headline/<run>.json: the few numbers dvc.yaml declares as metrics, read back from the files."""
    root, metrics, files = report
    folder = root / "report" / "headline"
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{run}.json" for run in RUNS)
    valid = {"relu_l1": 10, "topk_k8": 15}  # the runs with a concepts summary
    for run, m in metrics.items():
        expected = {
            "fvu": m["dense"]["fvu"],
            "l0_zero_fraction": m["dense"]["l0_zero_fraction"],
            "active": m["dense"]["active"],
            "cs": m["dense"]["cs"],
            "cknna": m["dense"]["cknna"],
            "sparse_fvu": m["sparse"]["fvu"],
            "zeroshot_retained": m["zeroshot_retained"],
        }
        if run in valid:
            expected["valid_concepts"] = valid[run]
        assert json.loads((folder / f"{run}.json").read_text()) == expected, run
        assert files[f"headline/{run}.json"] == folder / f"{run}.json"
    assert "headline/" not in (root / "report" / "index.html").read_text()  # data files, not page links


def test_headline_of_a_run_no_longer_reported_is_removed(tmp_path):
    make_results(tmp_path, with_extras=False)
    build(tmp_path)
    build(tmp_path, run_names=["topk_k8", "msae_rw"])
    assert sorted(p.name for p in (tmp_path / "report" / "headline").iterdir()) == ["msae_rw.json", "topk_k8.json"]


def test_headline_of_a_baseline_leaves_out_its_dense_path(tmp_path):
    """A classic baseline's dense path (ReLU over its correlations) is not its coder: its headline
    holds the sparse-path number only, while an SAE's keeps the dense ones."""
    written = make_results(tmp_path, with_extras=False)
    sae = tmp_path / "sae" / "relu_l1"
    architecture = {"variant": "baseline", "d": 32, "n_latents": N_LATENTS, "method": "pca", "components": 64}
    (sae / "config.json").write_text(json.dumps(architecture))
    metrics = {**written["relu_l1"], "variant": "baseline", IDENTITY_KEY: {"sae": run_identity(sae)}}
    (tmp_path / "eval" / "relu_l1" / "metrics.json").write_text(json.dumps(metrics))
    build(tmp_path)
    folder = tmp_path / "report" / "headline"
    assert json.loads((folder / "relu_l1.json").read_text()) == {"sparse_fvu": metrics["sparse"]["fvu"]}
    assert json.loads((folder / "topk_k8.json").read_text())["fvu"] == written["topk_k8"]["dense"]["fvu"]


def test_caption_evaluations_seeds_and_stability_are_read_from_the_run_folders(tmp_path):
    """results/eval/<run>/text_<split>/, seeds/<seed>/ and stability.json reach Table 2, the seeds
    table and the stability column; a caption evaluation of another SAE is refused."""
    written = make_results(tmp_path, with_extras=False)
    ev = tmp_path / "eval" / "topk_k8"
    text = {**written["topk_k8"], "dense": {**written["topk_k8"]["dense"], "fvu": 0.4321}}
    (ev / "text_test").mkdir()
    (ev / "text_test" / "metrics.json").write_text(json.dumps(text))
    for seed, fvu in (("1", 0.25), ("2", 0.35)):
        (ev / "seeds" / seed).mkdir(parents=True)
        replica = {**written["topk_k8"], "dense": {**written["topk_k8"]["dense"], "fvu": fvu}}
        (ev / "seeds" / seed / "metrics.json").write_text(json.dumps(replica))
    stability = {"mean_cosine": 0.61, "mean_cosine_std": 0.01, "fraction_above": 0.123, "fraction_above_std": 0.004}
    (ev / "stability.json").write_text(json.dumps(stability))
    build(tmp_path)
    tables = parse_markdown_tables((tmp_path / "report" / "table.md").read_text())
    language = tables["Training modality: language (test captions) vs vision (the paper's Table 2)"]
    assert list(language) == ["topk_k8"] and language["topk_k8"]["Lang. FVU ↓"].startswith(".432")
    assert tables["Dense path (the paper's Table 1)"]["topk_k8"]["Stability ↑"] == ".123 ± .004"
    seeds = tables["Seeds: mean ± std over seeds and dictionary stability"]["topk_k8"]
    mean = np.mean([written["topk_k8"]["dense"]["fvu"], 0.25, 0.35])
    assert seeds["Seeds"] == "3" and seeds["FVU ↓"].startswith(f"{mean:.3f}".lstrip("0"))
    text["identity"] = {"sae": "0" * 64}
    (ev / "text_test" / "metrics.json").write_text(json.dumps(text))
    with pytest.raises(MsaeError, match=r"text_test/metrics\.json: computed from another sae"):
        build(tmp_path)


def test_figures_and_plot_data(report):
    root, metrics, files = report
    out = root / "report"
    for name in ("pareto.png", "curves.png", *(f"curves/{r}.png" for r in RUNS)):
        with Image.open(out / name) as image:
            assert image.size[0] > 500 and image.size[1] > 200, name
    svg = ET.parse(out / "pareto.svg").getroot()
    assert svg.tag.endswith("svg")
    pareto = pd.read_csv(out / "pareto.csv")
    msae = pareto[(pareto.run == "msae_rw") & (pareto.source == "progressive")]
    assert msae["k"].tolist() == [8, 16, 32, 64, 128]
    dense = pareto[(pareto.run == "topk_k8") & (pareto.source == "dense")].iloc[0]
    assert dense["fvu"] == pytest.approx(metrics["topk_k8"]["dense"]["fvu"])
    curves = pd.read_csv(out / "train_curves.csv")
    assert list(curves.columns) == ["run", "step", "loss", "fvu", "dead_fraction"]
    assert curves.groupby("run").size().to_dict() == {r: 20 for r in RUNS}
    assert set(files) >= {"summary.json", "table.md", "table.html", "pareto.png", "pareto.svg", "index.html"}


def test_report_is_reproducible_and_skips_missing_optional_parts(tmp_path):
    make_results(tmp_path, seed=3, with_extras=False)
    (tmp_path / "sae" / "topk_k8" / "train_log.csv").unlink()
    (tmp_path / "eval" / "relu_l1" / "progressive.csv").unlink()
    files = build(tmp_path, run_names=["msae_rw", "topk_k8", "relu_l1"])
    first = {name: path.read_bytes() for name, path in files.items()}
    build(tmp_path, run_names=["msae_rw", "topk_k8", "relu_l1"])
    assert {name: path.read_bytes() for name, path in files.items()} == first
    assert "curves/topk_k8.png" not in files and "curves/msae_rw.png" in files
    page = (tmp_path / "report" / "index.html").read_text()
    assert "No concepts results" in page and "No probe results" in page
    table = parse_markdown_tables((tmp_path / "report" / "table.md").read_text())["Sparse path"]
    assert list(table) == ["msae_rw", "topk_k8", "relu_l1"]


def test_run_without_metrics_is_a_clear_error(tmp_path, capsys):
    make_results(tmp_path, with_extras=False)
    (tmp_path / "eval" / "topk_k8" / "metrics.json").unlink()
    with pytest.raises(MsaeError, match=r"topk_k8.*metrics\.json"):
        build(tmp_path)
    code = cli_main(
        ["report", "--runs", str(tmp_path / "sae"), "--eval", str(tmp_path / "eval"), "--out", str(tmp_path / "report")]
    )
    assert code == 2
    assert "topk_k8" in capsys.readouterr().err
    assert not (tmp_path / "report" / "summary.json").exists()


def test_bad_inputs_name_the_file(tmp_path):
    written = make_results(tmp_path, with_extras=False)
    (tmp_path / "eval" / "relu_l1" / "metrics.json").write_text("{not json")
    with pytest.raises(MsaeError, match=r"relu_l1/metrics\.json"):
        build(tmp_path)
    (tmp_path / "eval" / "relu_l1" / "metrics.json").write_text("{}")
    with pytest.raises(MsaeError, match=r"relu_l1/metrics\.json: not a complete evaluation \(no variant, n_latents"):
        build(tmp_path)
    (tmp_path / "eval" / "relu_l1" / "metrics.json").write_text(json.dumps(written["relu_l1"]))
    pd.DataFrame({"step": [0], "loss": [1.0]}).to_csv(tmp_path / "sae" / "relu_l1" / "train_log.csv", index=False)
    with pytest.raises(MsaeError, match=r"train_log\.csv: missing column\(s\) fvu, active, dead_fraction"):
        build(tmp_path)
    with pytest.raises(MsaeError, match="given more than once"):
        build(tmp_path, run_names=["topk_k8", "topk_k8"])


# --- best-value marks as a property, on in-memory runs ---------------------------------------

value = st.one_of(st.none(), st.floats(0, 1), st.floats(0, 500))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(value, value, st.integers(0, 5), st.integers(0, 50)), min_size=2, max_size=6))
def test_best_mark_follows_column_direction(cells):
    runs = []
    for i, (fvu, kl, ndn, ndn_train) in enumerate(cells):
        metrics = {"dense": {} if fvu is None else {"fvu": fvu}, "ndn": ndn, "ndn_train": ndn_train}
        if kl is not None:
            metrics["lp_kl"] = kl
        runs.append(RunResults(name=f"r{i}", metrics=metrics))
    rows = build_rows(runs, DENSE_COLUMNS)
    headers = [c.header for c in DENSE_COLUMNS]
    for header, raw, _higher in (
        ("FVU", [c[0] for c in cells], False),
        ("LP(KL)", [c[1] for c in cells], False),
        ("NDN", [(c[2], c[3]) for c in cells], False),
    ):
        column = [row[headers.index(header)] for row in rows]
        present = [i for i, r in enumerate(raw) if r is not None]
        marked = {i for i, cell in enumerate(column) if cell.best}
        if len(present) < 2:
            assert not marked
            continue
        best_raw = min(raw[i] for i in present)
        assert {i for i in present if raw[i] == best_raw} <= marked  # exact winners always marked
        shown = {i: tuple(float(x) for x in re.findall(r"\d*\.?\d+(?:e[-+]?\d+)?", column[i].text)) for i in present}
        best_shown = min(shown.values())
        assert marked == {i for i in present if shown[i] == best_shown}  # ties as displayed share the mark


def test_number_format_matches_the_paper():
    assert [format_number(v, "frac") for v in (0.92, 0.0004, 1.0, -0.25)] == [".920", ".000", "1.000", "-.250"]
    assert [format_number(v, "nats") for v in (50.5, 2.714, 0.66, 123.4)] == ["50.5", "2.71", "0.66", "123"]
    assert format_number(77.12, "nats", decimals=1) == "77.1" and format_number(3.6, "int") == "4"
