"""Bad-input matrix, input class "text in figures and pages" (issue 14): vocabulary terms,
captions, concept names and query ids reach matplotlib (where '$' starts mathtext), HTML pages
and file names. Any text must be drawn as written, escaped in HTML, and never steer a path; a
figure that fails must not leave a half-written output folder."""

from __future__ import annotations

import html
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hostile_fixtures import build, meta, run_cli
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from msae.concepts.gallery import GalleryEntry, render_page, write_index
from msae.probes.concepts import Concept
from msae.probes.plots import bias_bars, concept_curves, neighbour_strip
from msae.probes.run import _safe_name
from msae.store import write_embeddings

# mathtext and TeX specials, HTML specials, path specials, control and wide characters
# (matplotlib's mathtext fails on "$\\frac{$", "$}$", "$x^$", "$\\nosuch$" and "$$")
NASTY = ["$\\frac{$", "$}$", "$x^$", "$\\nosuch$", "$$", "a $ b $ c", "50$", "\\", "{}", "%", "_^", "&amp;"]
NASTY += ["<script>alert(1)</script>"]
NASTY += ["a\nb", "../../etc/passwd", "/", ".", "..", "", "é中文🙂", "x" * 300, "\t"]
hostile = st.one_of(st.sampled_from(NASTY), st.text(max_size=40))
FIGURES = settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
pytestmark = pytest.mark.filterwarnings("ignore:Glyph .* missing from font:UserWarning")


@FIGURES
@given(name=hostile, caption=hostile)
@example(name="\r", caption="$\\frac{$")  # a carriage return survives into the page (read without translation)
def test_gallery_page_and_index_draw_any_text(tmp_path, name, caption):
    entry = GalleryEntry(7, name, 0.5, 0.1, True, [None, None], [1.0, 0.5], [caption, caption])
    path, missing = render_page(entry, tmp_path / "galleries" / entry.filename)
    assert path.stat().st_size > 0 and missing == 2
    page = (
        write_index(tmp_path, [entry], f"Concepts of {name}").read_bytes().decode("utf-8")
    )  # no newline translation: a "\r" stays "\r"
    assert html.escape(name) in page
    assert "<script>" not in page


@FIGURES
@given(labels=st.lists(hostile, min_size=1, max_size=3), title=hostile)
def test_probe_figures_draw_any_text(tmp_path, labels, title):
    n = len(labels)
    effects = {"all": {"dp": np.linspace(-0.2, 0.2, n), "flip_rate": np.linspace(0, 1, n)}}
    assert bias_bars(tmp_path / "bias.png", labels, effects, 0, title).stat().st_size > 0
    items = [{"image": None, "fallback": labels[0], "title": labels[-1], "has": None}]
    assert neighbour_strip(tmp_path / "strip.png", title, None, [(labels[0], items)]).stat().st_size > 0
    curves = {
        f"k{i}": {"concept_frac": [0.1, 0.9], "original_concept_frac": 0.1, "value": v, "latent": i, "keep": {}}
        for i, v in enumerate(labels)
    }
    assert concept_curves(tmp_path / "curves.png", [0.0, 1.0], curves, title).stat().st_size > 0


@settings(max_examples=300, deadline=None)
@given(text=hostile, latent=st.integers(0, 10**6))
def test_names_that_become_file_names_stay_inside_their_folder(text, latent):
    for name in (_safe_name(text), Concept(latent, text).key):
        assert name and "/" not in name and name not in (".", "..") and "\x00" not in name
        assert re.fullmatch(r"[A-Za-z0-9._-]+", name)


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return build(tmp_path_factory.mktemp("good"))


def test_concepts_named_with_hostile_terms_and_captions_write_their_galleries(good, tmp_path):
    """`msae concepts` on a vocabulary of '$' terms and HTML (it crashed in matplotlib's mathtext
    and left a half-written folder); every valid and requested latent gets its page."""
    terms = ["$\\frac{$", "$}$", "$x^$", "$\\nosuch$", "$$", "<b>$_$</b>", "$x^{$", "${}$"]  # each fails as mathtext
    vectors = np.random.default_rng(3).normal(size=(len(terms), 16)).astype(np.float32)
    vocab = write_embeddings(tmp_path / "vocab.parquet", terms, vectors, meta("text", "all", "vocab"), {"text": terms})
    out = tmp_path / "concepts"
    args = ["concepts", "--sae", good["sae"], "--vocab", vocab, "--images", good["images"], "--out", out]
    args += ["--device", "cpu", "--null-samples", "10", "--gallery-limit", "0", "--latents", "0,1,2,3,4,5"]
    answer = run_cli(args)
    assert answer.code == 0, answer.stderr[-1500:]
    assert len(list((out / "galleries").glob("*.png"))) == 6
    index = (out / "index.html").read_bytes().decode("utf-8")  # no newline translation: a "\r" stays "\r"
    names = set(pd.read_parquet(out / "latents.parquet").query("latent < 6")["name"])
    assert all(html.escape(n) in index for n in names) and "<b>" not in index


def test_probes_with_hostile_concept_names_and_query_ids(good, tmp_path):
    table = pd.read_parquet(good["latents"]).assign(
        name=lambda t: ["$\\frac{$", "$}$", "<i>$$</i>", "$x^$", *t["name"][4:]], attribute=""
    )
    latents = tmp_path / "latents.parquet"
    table.to_parquet(latents)
    bias = ["probe", "bias", "--sae", good["sae"], "--train", good["images"], "--test", good["images"]]
    bias += ["--concepts", latents, "--target-column", "attr_big", "--out", tmp_path / "bias", "--device", "cpu"]
    answer = run_cli(bias)
    assert answer.code == 0, answer.stderr[-1500:]
    similarity = ["probe", "similarity", "--sae", good["sae"], "--embeddings", good["images"], "--concepts", latents]
    similarity += ["--concept", "$\\frac{$", "--concept", "$}$", "--queries", "item000,item001"]
    similarity += ["--out", tmp_path / "similarity", "--device", "cpu"]
    answer = run_cli(similarity)
    assert answer.code == 0, answer.stderr[-1500:]
    strips = [p.name for p in (tmp_path / "similarity" / "strips").glob("*.png")]
    assert len(strips) == 4 and all(re.fullmatch(r"[A-Za-z0-9._-]+", s) for s in strips)


def test_a_figure_that_fails_leaves_no_half_written_output(good, tmp_path, monkeypatch):
    """Whatever breaks while the outputs are drawn, the output folder keeps the previous result."""
    import msae.probes.plots as plots

    out = tmp_path / "bias"
    out.mkdir()
    (out / "summary.json").write_text('{"old": 1}')

    def broken(*args, **kwargs) -> Path:
        raise ValueError("a figure that cannot be drawn")

    monkeypatch.setattr(plots, "bias_bars", broken)
    args = ["probe", "bias", "--sae", good["sae"], "--train", good["images"], "--test", good["images"]]
    args += ["--target-column", "attr_big", "--candidates", "0", "--out", out, "--device", "cpu"]
    assert run_cli(args).code == 1  # a bug: a traceback, but
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bias"]  # no staging folder left behind
    assert [p.name for p in out.iterdir()] == ["summary.json"] and (out / "summary.json").read_text() == '{"old": 1}'
