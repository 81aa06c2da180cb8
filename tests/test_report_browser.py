"""The concept browser: its exported data against the concepts outputs and brute force, and the
page itself in a real headless Chromium (Playwright driving /usr/bin/chromium).

The planted world has four colour concepts and one latent named by a hostile vocabulary term
(markup that would run script if inserted as HTML); run `beta` is run `alpha` with its latents
permuted, so the cross-run match of every latent is known.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from msae.cli import main as cli_main
from msae.errors import MsaeError
from msae.identity import run_identity
from msae.report import load_runs
from msae.report.browser import export_run, site, write_browser
from msae.report.browser.activity import first_level, latent_activity
from msae.report.browser.check import missing_requirement, open_page
from msae.report.browser.labels import gallery_labels
from msae.report.browser.matches import best_matches, chance_cosine
from msae.report.browser.overview import CONCEPTS_CAPTION, PATHS_NOTE
from msae.report.browser.site import THUMB, write_thumbnail
from msae.store import read_embeddings, write_embeddings

D = 16
COLOURS = ("red", "green", "blue", "yellow")
HOSTILE = '<img src=x onerror="window.__pwned=1">'
HOSTILE_CAPTION = "<script>window.__pwned=2</script><b>bold</b> caption"
BACKBONE = {"model": "toy-clip", "pretrained": "planted"}
PERM = np.array([3, 0, 4, 1, 2, 7, 5, 6, 10, 8, 9, 15, 11, 12, 13, 14])  # beta's latent PERM[j] = alpha's j


# --------------------------------------------------------------------------- fixtures
def build_sae(variant: str, atoms: np.ndarray, mean: np.ndarray, **options):
    """An SAE with decoder rows `atoms` and a tied encoder (the only use of msae.sae here)."""
    from msae.sae import SparseAutoencoder, make_config

    n, d = atoms.shape
    sae = SparseAutoencoder(make_config(variant, d, n / d, **options))
    with torch.no_grad():
        w = torch.tensor(atoms, dtype=torch.float32)
        sae.W_dec.copy_(w)
        sae.W_enc.copy_(w.T)
        sae.b_enc.fill_(-0.4)
        sae.b_pre.zero_()
    sae.set_statistics(torch.tensor(mean, dtype=torch.float32), 1.0)
    return sae.eval()


def save_sae(sae, directory: Path) -> Path:
    from msae.sae import save

    return save(sae, directory, {"data": {**BACKBONE, "modality": "image", "dataset": "planted", "split": "test"}})


def _meta(modality: str) -> dict:
    return {**BACKBONE, "modality": modality, "dataset": "planted", "split": "test"}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """Stores, two SAEs (alpha: Matryoshka, beta: ReLU = alpha permuted), their concepts
    outputs and evaluation files, laid out as the pipeline does."""
    root = tmp_path_factory.mktemp("browser")
    rng = np.random.default_rng(0)
    text_mean, image_mean = rng.normal(size=D) * 3, rng.normal(size=D) * 3
    words = [*COLOURS, HOSTILE]
    concept = np.linalg.qr(rng.normal(size=(D, len(words))))[0].T
    distract = rng.normal(size=(60, D))
    distract /= np.linalg.norm(distract, axis=1, keepdims=True)
    terms = words + [f"word{i:02d}" for i in range(60)]
    vocab = text_mean + np.vstack([concept, distract])
    write_embeddings(root / "vocab.parquet", terms, vocab, _meta("text"), {"text": terms})

    n_images = 240
    which = rng.integers(len(words), size=n_images)
    x = image_mean + rng.uniform(1.5, 2.5, (n_images, 1)) * concept[which] + 0.15 * rng.normal(size=(n_images, D))
    (root / "img").mkdir()
    paths, captions = [], []
    for i, w in enumerate(which):
        size = (200, 100) if i == 0 else (8, 8)  # one large image: it must be shrunk
        Image.new("RGB", size, (60 * w, 250 - 60 * w, 90)).save(root / "img" / f"{i}.png")
        paths.append(f"img/{i}.png")  # relative to `root`, as msae embed writes it
        captions.append(HOSTILE_CAPTION if words[w] == HOSTILE else f"a {words[w]} thing")
    columns = {"text": captions, "path": paths, "attr_color": [words[w] if w < 4 else "none" for w in which]}
    write_embeddings(root / "images.parquet", [f"img-{i:04d}" for i in range(n_images)], x, _meta("image"), columns)

    centred = vocab[: len(words)] - vocab.mean(0)
    randoms = rng.normal(size=(D - len(words), D))
    atoms = np.vstack([centred, randoms])
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    alpha = build_sae("matryoshka", atoms, image_mean, nesting=[2, 4, 8, 16])
    beta = build_sae("relu", atoms[np.argsort(PERM)], image_mean)
    for name, sae in (("alpha", alpha), ("beta", beta)):
        save_sae(sae, root / "sae" / name)
        code = cli_main(
            [
                "concepts",
                "--sae",
                str(root / "sae" / name),
                "--vocab",
                str(root / "vocab.parquet"),
                "--images",
                str(root / "images.parquet"),
                "--out",
                str(root / "concepts" / name),
                "--null-samples",
                "200",
                "--top-images",
                "6",
                "--gallery-limit",
                "0",
                "--device",
                "cpu",
            ]
        )
        assert code == 0
        metrics = {
            "variant": sae.config.variant,
            "n_latents": D,
            "n_eval": n_images,
            "dense": {"fvu": 0.5, "cs": 0.9, "l0_zero_fraction": 0.5, "active": 8.0},
            "sparse": {"fvu": 0.3, "cs": 0.95, "l0_zero_fraction": 0.8, "active": 3.0},
            "identity": {"sae": run_identity(root / "sae" / name)},
        }
        (root / "eval" / name).mkdir(parents=True)
        (root / "eval" / name / "metrics.json").write_text(json.dumps(metrics))
    figures = {"pareto.png": root / "pareto.png"}  # the report's figure and alpha's probe figures
    for path in (
        root / "pareto.png",
        root / "probes/alpha/similarity/curves.png",
        root / "probes/alpha/similarity/strips/img-0001__red.png",
        root / "probes/alpha/bias/bias.png",
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (30, 20), (200, 10, 10)).save(path)
    runs = load_runs(root / "eval", root / "sae", root / "concepts", root / "probes")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(site, "CHUNK", 3)  # several data files per run, as for large dictionaries
        files = write_browser(
            root / "browser",
            runs,
            root / "sae",
            root / "images.parquet",
            image_root=root,
            figures=figures,
            top=6,
            random=4,
            bins=10,
        )
    return {"root": root, "runs": runs, "files": files, "x": x, "alpha": alpha, "beta": beta}


def read_js(path: Path) -> object:
    """The JSON value assigned in one of the browser's data files (checking the assignment)."""
    text = path.read_text(encoding="utf-8")
    head = re.match(r'(window\.MSAE_RUNS\["\d+\.\d+"\]|window\.MSAE_[A-Z]+) = ', text)
    assert head, text[:80]
    return json.loads(text[head.end() :].rstrip().removesuffix(";"))


def latent_pages(root: Path, run: dict) -> dict:
    """Every latent page of a run, from all its chunk files (checking each chunk's id range)."""
    pages = {}
    size = read_js(root / "browser" / "data" / "index.js")["chunk"]
    for path in sorted((root / "browser").glob(f"{run['file']}-*.js")):
        chunk = int(path.stem.rsplit("-", 1)[1])
        part = read_js(path)
        assert all(int(j) // size == chunk for j in part)
        pages.update(part)
    assert len(pages) > size  # the fixture spreads a run over several files
    return pages


def named(root: Path, run: str, name: str) -> tuple[int, int]:
    """(alive latents named `name`, of which valid) from the run's latents.parquet."""
    latents = pd.read_parquet(root / "concepts" / run / "latents.parquet")
    hits = latents[(latents["name"] == name) & (latents["active_images"] > 0)]
    return len(hits), int(hits["valid"].sum())


def term_only(root: Path) -> tuple[str, int]:
    """A vocabulary term that names no alive latent but is among the terms of some, and how many
    alive latents of all runs list it."""
    tables = []
    for run in ("alpha", "beta"):
        latents = pd.read_parquet(root / "concepts" / run / "latents.parquet")
        alive = set(latents.loc[latents["active_images"] > 0, "latent"])
        terms = pd.read_parquet(root / "concepts" / run / "names.parquet")
        tables.append((set(latents.loc[latents["latent"].isin(alive), "name"]), terms[terms["latent"].isin(alive)]))
    names = set().union(*(n for n, _ in tables))
    counts = pd.concat([t for _, t in tables]).groupby("term")["latent"].count()
    term = next(t for t in counts.index if t not in names and t.startswith("word"))
    return term, int(counts[term])


# --------------------------------------------------------------------------- statistics vs brute force
@pytest.mark.parametrize("budget", [1 << 20, 40])  # one block / many 2-row blocks
def test_latent_activity_matches_numpy(budget):
    rng = np.random.default_rng(1)
    n, d, top, random = 20, 6, 4, 3
    w, b = rng.normal(size=(d, n)), rng.normal(size=n) - 1.0
    b[0] = -100.0  # never fires
    x = rng.normal(size=(150, d)).astype(np.float32)

    def encode(t: torch.Tensor) -> torch.Tensor:
        return (t.double() @ torch.tensor(w) + torch.tensor(b)).clamp_min(0).float()

    got = latent_activity(encode, x, n, top=top, random=random, bins=7, seed=3, budget=budget)
    dense = np.maximum(x.astype(np.float64) @ w + b, 0).astype(np.float32).astype(np.float64)
    active = dense > 0
    np.testing.assert_array_equal(got.active_count, active.sum(0))
    np.testing.assert_allclose(got.max_value, dense.max(0), rtol=1e-6)
    ranks = (dense[:, :, None] < dense[:, None, :]).sum(2) + 1  # 1 + latents larger in that image
    best = np.where(active, ranks, n + 1).min(0)
    np.testing.assert_array_equal(got.best_rank, np.where(active.any(0), best, 0))
    for j in range(n):
        order = np.argsort(-dense[:, j], kind="stable")[: active[:, j].sum()][:top]
        np.testing.assert_array_equal(got.top_images[j][: len(order)], order)
        assert (got.top_images[j][len(order) :] == -1).all()
        np.testing.assert_allclose(got.top_values[j][: len(order)], dense[order, j], rtol=1e-6)
        if active[:, j].any():
            edges = np.linspace(0, dense[:, j].max(), 8)
            expect, _ = np.histogram(dense[active[:, j], j], bins=edges)
            np.testing.assert_array_equal(got.histogram[j], expect)
        else:
            assert got.histogram[j].sum() == 0
        others = set(np.flatnonzero(active[:, j])) - set(order)
        picks = [i for i in got.random_images[j] if i >= 0]
        assert len(picks) == len(set(picks)) == min(random, len(others))
        assert set(picks) <= others
        np.testing.assert_allclose([got.random_values[j][k] for k in range(len(picks))], dense[picks, j], rtol=1e-6)
    again = latent_activity(encode, x, n, top=top, random=random, bins=7, seed=3, budget=budget)
    np.testing.assert_array_equal(again.random_images, got.random_images)


def test_random_examples_are_uniform_over_the_activating_images():
    """A latent firing on 10 non-top images, drawn 2 at a time under 400 seeds: each image is
    picked ~80 times (a biased sampler, e.g. always the largest, fails)."""
    x = np.arange(1, 13, dtype=np.float32)[:, None]

    def encode(t: torch.Tensor) -> torch.Tensor:
        return t.clone()

    counts = np.zeros(12)
    for seed in range(400):
        got = latent_activity(encode, x, 1, top=2, random=2, seed=seed)
        counts[got.random_images[0]] += 1
    assert counts[10:].sum() == 0  # the top-2 images are never random picks
    assert counts[:10].min() > 50 and counts[:10].max() < 115, counts


def test_first_level_known_answer():
    ranks = np.array([0, 1, 2, 3, 8, 9, 16, 17])
    np.testing.assert_array_equal(first_level(ranks, [2, 4, 8, 16]), [0, 2, 2, 4, 8, 16, 16, 0])


def test_first_level_equals_brute_force_on_a_tiny_matryoshka():
    rng = np.random.default_rng(2)
    atoms = rng.normal(size=(32, 8))
    sae = build_sae(
        "matryoshka",
        atoms / np.linalg.norm(atoms, axis=1, keepdims=True),
        rng.normal(size=8),
        nesting=[2, 4, 8, 16, 32],
    )
    with torch.no_grad():
        sae.b_enc.copy_(torch.tensor(rng.normal(size=32) * 0.5 - 0.3, dtype=torch.float32))
    x = rng.normal(size=(60, 8)).astype(np.float32)
    levels = sae.sparse_levels()
    got = first_level(latent_activity(sae.encode_dense, x, 32, budget=64).best_rank, levels)
    expect = np.zeros(32, dtype=np.int64)
    with torch.no_grad():
        for k in reversed(levels):  # brute force: which latents does the model's own top-k keep?
            expect[(sae.encode(torch.tensor(x), k=k) > 0).any(0).numpy()] = k
    assert len(set(expect)) >= 3, expect  # the data exercise several levels
    np.testing.assert_array_equal(got, expect)


def test_best_matches_equal_brute_force():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(30, 5)), rng.normal(size=(25, 5))
    alive = rng.random(25) > 0.3
    idx, cos = best_matches(a, b, alive, top=3)
    full = (a / np.linalg.norm(a, axis=1, keepdims=True)) @ (b / np.linalg.norm(b, axis=1, keepdims=True)).T
    full[:, ~alive] = -np.inf
    np.testing.assert_array_equal(idx, np.argsort(-full, axis=1)[:, :3])
    np.testing.assert_allclose(cos, np.sort(full, axis=1)[:, ::-1][:, :3], rtol=1e-5)


def test_chance_cosine_closed_form_on_isotropic_data():
    """One atom, white data: the cosine of a uniform random direction with a fixed unit vector in
    d dimensions is 2B - 1 with B ~ Beta((d-1)/2, (d-1)/2), whatever the data's mean."""
    from scipy import stats

    d = 8
    data = np.random.default_rng(5).standard_normal((20000, d)) + 5.0  # the mean must not matter
    got = chance_cosine(np.eye(d)[:1], np.array([True]), data, samples=10000, quantile=0.9, seed=1, max_rows=1000)
    assert got == pytest.approx(2 * stats.beta.ppf(0.9, (d - 1) / 2, (d - 1) / 2) - 1, abs=0.03)


def test_chance_cosine_is_high_on_anisotropic_data():
    """Negative control: atoms that merely follow where CLIP-like data lies (here a random
    3-dimensional subspace of 32) are matched closely by random data-shaped directions, so a
    cosine of 0.8 there is chance; the same atoms against isotropic data are not."""
    rng = np.random.default_rng(6)
    basis = np.linalg.qr(rng.standard_normal((32, 3)))[0].T  # [3, 32]
    data = rng.standard_normal((3000, 3)) * [3.0, 2.0, 1.5] @ basis + 0.02 * rng.standard_normal((3000, 32))
    atoms = rng.standard_normal((40, 3)) @ basis
    alive = np.ones(40, dtype=bool)
    anisotropic = chance_cosine(atoms, alive, data, seed=0)
    isotropic = chance_cosine(atoms, alive, rng.standard_normal((3000, 32)), seed=0)
    assert anisotropic > 0.9 and isotropic < 0.75, (anisotropic, isotropic)


# --------------------------------------------------------------------------- export vs the concepts outputs
def test_latent_pages_equal_the_concepts_outputs(world):
    root = world["root"]
    index = read_js(root / "browser" / "data" / "index.js")
    images = read_js(root / "browser" / "data" / "images.js")
    assert sorted(r["name"] for r in index["runs"]) == ["alpha", "beta"]
    for run in index["runs"]:
        latents = pd.read_parquet(root / "concepts" / run["name"] / "latents.parquet")
        names = pd.read_parquet(root / "concepts" / run["name"] / "names.parquet")
        summary = json.loads((root / "concepts" / run["name"] / "summary.json").read_text())
        pages = latent_pages(root, run)
        alive = latents[latents["active_images"] > 0]
        assert sorted(map(int, pages)) == alive["latent"].tolist() == run["latents"]["id"]
        assert run["latents"]["name"] == alive["name"].tolist()
        for row in alive.itertuples():
            page = pages[str(row.latent)]
            assert (page["name"], page["valid"], page["active"]) == (row.name, row.valid, row.active_images)
            assert page["attr"] == row.attribute
            assert page["score"] == pytest.approx(row.score, rel=1e-3)
            assert page["freq"] == pytest.approx(row.frequency, rel=1e-3)
            terms = names[names["latent"] == row.latent].sort_values("rank")
            assert [t for t, _ in page["terms"]] == terms["term"].tolist()
            np.testing.assert_allclose([s for _, s in page["terms"]], terms["score"], rtol=1e-3)
            # the validity reasons, recomputed from the evidence and summary.json's thresholds
            expect = [
                row.active_images >= summary["rule_min_active"],
                row.distinctness >= summary["null_threshold"],
                row.caption_rate >= summary["rule_min_caption_rate"],
                row.caption_p <= summary["rule_caption_alpha"],
            ]
            assert page["passed"] == expect and all(expect) == row.valid
            assert sum(page["hist"]) == row.active_images
            # top images: their captions' agreement with the name reproduces latents.parquet's caption_rate
            shown = [images[i][1] for i, _ in page["top"]]
            assert len(shown) == min(6, row.active_images)
            rate = np.mean([f" {row.name} " in f" {c} " for c in shown])
            assert rate == pytest.approx(row.caption_rate)


def test_levels_and_cross_run_matches_of_the_planted_runs(world):
    root = world["root"]
    index = read_js(root / "browser" / "data" / "index.js")
    by_name = {r["name"]: (i, r) for i, r in enumerate(index["runs"])}
    _, alpha = by_name["alpha"]
    b, _ = by_name["beta"]
    assert alpha["ladder"] == [2, 4, 8, 16] and alpha["nested"]
    assert by_name["beta"][1]["ladder"] == [8, 16] and not by_name["beta"][1]["nested"]  # n = 16, from k = 8
    pages = latent_pages(root, alpha)
    x = torch.tensor(world["x"], dtype=torch.float32)
    for j, page in pages.items():
        with torch.no_grad():
            first = min(k for k in [2, 4, 8, 16] if (world["alpha"].encode(x, k=k)[:, int(j)] > 0).any())
        assert page["level"] == first
        ((run, matches),) = page["matches"]
        assert run == b and matches[0][0] == PERM[int(j)] and matches[0][1] == pytest.approx(1.0, abs=1e-3)
    ((run, chance),) = alpha["chance"]
    assert run == b and 0 < chance < 0.99  # the planted twins (cos 1) are above chance


def test_thumbnails_shrink_large_images_and_copy_small_ones(world, tmp_path):
    root = world["root"]
    src_small, src_large = root / "img" / "1.png", root / "img" / "0.png"
    assert write_thumbnail(src_small, tmp_path, "s") == "s.png"
    assert (tmp_path / "s.png").read_bytes() == src_small.read_bytes()
    name = write_thumbnail(src_large, tmp_path, "l")
    with Image.open(tmp_path / name) as img:
        assert max(img.size) == THUMB and img.size[0] == 2 * img.size[1]
    assert write_thumbnail(root / "img" / "missing.png", tmp_path, "m") is None


def test_rebuild_with_fewer_runs_leaves_no_stale_file(world, tmp_path):
    root = world["root"]
    out = tmp_path / "browser"
    shutil.copytree(root / "browser", out)
    keep = world["runs"][:1]
    files = write_browser(out, keep, root / "sae", root / "images.parquet", image_root=root)
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert on_disk == set(files)  # nothing of the two-run build is left
    assert [r["name"] for r in read_js(out / "data" / "index.js")["runs"]] == [keep[0].name]


def test_another_image_store_is_refused(world, tmp_path):
    root = world["root"]
    store = read_embeddings(root / "images.parquet")
    shuffled = tmp_path / "other.parquet"
    rows = np.random.default_rng(0).permutation(len(store))[:200]
    write_embeddings(shuffled, list(store.ids[rows]), store.embeddings[rows], store.meta, {})
    with pytest.raises(MsaeError, match="other.parquet has 200 images"):
        export_run(root / "sae" / "alpha", shuffled, root / "concepts" / "alpha")


def test_comparison_explains_the_paths_before_the_tables(world):
    root = world["root"]
    page = (root / "browser" / "index.html").read_text()
    assert page.index(PATHS_NOTE.split(":")[0]) < page.index('<table class="results"')
    assert "what most SAE libraries call L0" in page  # says which L0 is which
    assert page.index("Sparse path:") < page.index("Dense path:")
    linked = re.findall(r'<img src="(figures/[^"]+)"', page)
    i = [run.name for run in world["runs"]].index("alpha")
    copied = {"pareto.png", f"curves-run-{i:03d}.png", f"strip-run-{i:03d}.png", f"bias-run-{i:03d}.png"}
    assert {Path(f).name for f in linked} == copied and all((root / "browser" / f).is_file() for f in linked)
    assert "alpha · “red”" in page  # the strip is titled by its concept
    bias = (root / "browser" / "figures" / f"bias-run-{i:03d}.png").read_bytes()
    assert bias == (root / "probes/alpha/bias/bias.png").read_bytes()


def test_page_script_never_inserts_markup():
    script = (Path(site.__file__).parent / "static" / "browser.js").read_text()
    code = re.sub(r"/\*.*?\*/", "", script, flags=re.DOTALL)
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in code, sink


# --------------------------------------------------------------------------- Snakemake report
def test_gallery_labels_name_the_concept(world):
    concepts = world["root"] / "concepts" / "alpha"
    latents = pd.read_parquet(concepts / "latents.parquet")
    for row in latents.itertuples():
        wildcards = SimpleNamespace(name=f"latent_{row.latent:06d}", run="alpha")
        expect = {"concept": row.name, "latent": str(row.latent), "run": "alpha"}
        assert gallery_labels(wildcards, [str(concepts)]) == expect
    with pytest.raises(MsaeError, match="has no latent 999"):
        gallery_labels(SimpleNamespace(name="latent_000999", run="alpha"), [str(concepts)])
    with pytest.raises(MsaeError, match="not a gallery file name"):
        gallery_labels(SimpleNamespace(name="index", run="alpha"), [str(concepts)])


CAPTIONS = {  # caption file -> the wildcards of the report entries that use it
    "workflow.rst": [{}],
    "metrics.rst": [{"run": "topk_k8"}],
    "gallery.rst": [{"run": "topk_k8", "name": "latent_000011"}, {"run": "topk_k8", "name": "latent_000000"}],
    "comparison.rst": [{"name": "pareto"}, {"name": "curves"}, {"name": "other"}],
    "probes.rst": [{"run": "topk_k8", "name": n} for n in ("curves", "bias", "test-000032__blue")],
}


@pytest.mark.parametrize("caption", sorted(CAPTIONS))
def test_report_captions_render_with_the_pipeline_config(caption):
    """Each caption renders as Snakemake renders it (Jinja, then reStructuredText), with every
    config key it names present in params.yaml (strict) and no reStructuredText warning."""
    import yaml
    from docutils.core import publish_parts
    from jinja2 import Environment, StrictUndefined

    repo = Path(__file__).resolve().parents[1]
    config = yaml.safe_load((repo / "params.yaml").read_text())
    env = Environment(trim_blocks=True, lstrip_blocks=True, undefined=StrictUndefined)
    template = env.from_string((repo / "workflow" / "report" / caption).read_text())
    for wildcards in CAPTIONS[caption]:
        text = template.render(snakemake=SimpleNamespace(wildcards=SimpleNamespace(**wildcards), config=config))
        body = publish_parts(text, writer="html", settings_overrides={"halt_level": 2, "report_level": 5})["body"]
        assert len(body) > 100 and "{{" not in body
        if "name" in wildcards and caption == "gallery.rst":
            assert f"<strong>{int(wildcards['name'][7:])}</strong>" in body


# --------------------------------------------------------------------------- the page in a real browser
@pytest.mark.skipif(missing_requirement() is not None, reason=str(missing_requirement()))
def test_page_in_headless_chromium(world):
    """Loads from file:// with no console error or failed request; search finds a concept in both
    runs; a latent page shows its images; the hostile term and caption render as text."""
    root = world["root"]
    with open_page(root / "browser" / "index.html") as (page, errors):
        page.fill("#q", "red")
        first = page.locator("#results tbody tr").first
        assert first.locator("b.name").text_content() == "red"
        first.click()
        page.wait_for_selector("article.latent .gallery.top img")
        assert page.locator("article.latent .latent-name").text_content() == "“red”"
        loaded = page.eval_on_selector_all(
            "article.latent .gallery img", "imgs => imgs.map(i => i.complete && i.naturalWidth > 0)"
        )
        assert loaded and all(loaded)
        assert page.locator(".hist rect.bar").count() == 10
        page.get_by_role("button", name="Which runs found “red”?").click()  # one click: every run's "red"
        chips = sorted(page.locator("#by-run .chip").all_text_contents())
        assert chips == [f"{run}: {n} ({v} valid)" for run in ("alpha", "beta") for n, v in [named(root, run, "red")]]
        shown = page.locator("article.latent .crumb").text_content().split(" ")[0]
        other = "beta" if shown == "alpha" else "alpha"
        page.locator(".matches a.match").first.click()  # the same direction in the other run
        page.wait_for_function(
            f"() => document.querySelector('article.latent .crumb')?.textContent.startsWith('{other}')"
        )
        assert page.locator("article.latent .latent-name").text_content() == "“red”"
        term, expect = term_only(root)  # found through a latent's other terms, not its name
        page.fill("#q", term)
        assert page.locator("#results tbody tr").count() == expect > 0
        page.fill("#q", HOSTILE[:12])
        page.locator("#results tbody tr").first.click()
        page.wait_for_selector("article.latent .gallery.top figcaption")
        assert page.locator("article.latent .latent-name").text_content() == f"“{HOSTILE}”"
        captions = page.locator("article.latent .gallery.top figcaption").all_text_contents()
        assert any(HOSTILE_CAPTION in c for c in captions)
        assert page.evaluate("() => window.__pwned") is None
        injected = "article.latent img[onerror], article.latent script, article.latent figcaption b:not(:first-child)"
        assert page.locator(injected).count() == 0
        page.click("#tab-compare")
        page.wait_for_selector("#view-compare table.results", state="visible")
        assert page.locator("#view-concepts").is_hidden()
        captions = page.locator("#view-compare table.results caption").all_text_contents()
        assert [c.split(":")[0] for c in captions] == ["Sparse path", "Dense path", CONCEPTS_CAPTION]
        assert errors == []
