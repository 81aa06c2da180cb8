"""Bad-input matrix, input classes "result files" and "output paths" (issue 14): broken or
foreign results × the commands that read them (report, probes' --concepts and --queries), and
`--out` values that cannot be written × every writing command. Each case: exit 2, a message
naming the file (and key), no output created or changed."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from hostile_checks import expect_refusal, old_output, write_json
from hostile_fixtures import build, write_sae

from msae.identity import identity_block

CPU = ("--device", "cpu")


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return build(tmp_path_factory.mktemp("good"))


def complete_metrics(sae: Path, store: Path) -> dict:
    """A metrics.json as `msae evaluate` writes it (docs/internals.md), with its identity block."""
    block = {
        "l0_zero_fraction": 0.9,
        "l0_zero_fraction_std": 0.01,
        "active": 4.0,
        "active_std": 0.0,
        "fvu": 0.3,
        "fvu_std": 0.02,
    }
    block |= {"fvu_dataset": 0.3, "cs": 0.8, "cs_std": 0.01, "cknna": 0.5, "cknna_std": 0.02, "ndn": 1}
    return {
        "variant": "topk", "n_latents": 64, "d": 16, "n_eval": 48, "dense": block, "sparse": block,
        "do": 0.1, "ndn": 1, "ndn_sparse": 1, "identity": identity_block(sae, embeddings=store),
    }  # fmt: skip


def _runs(root: Path, good: dict) -> tuple[Path, Path]:
    """results/sae/a and results/eval/a of one good run."""
    runs, evals = root / "runs", root / "eval"
    shutil.copytree(good["sae"], runs / "a")
    write_json(evals / "a" / "metrics.json", complete_metrics(runs / "a", good["images"]))
    return runs, evals


def _break(relative: str, text: str | Callable[[dict], object]) -> Callable[[Path, dict], None]:
    def apply(root: Path, good: dict) -> None:
        path = root / relative
        if callable(text):
            write_json(path, text(json.loads(path.read_text()) if path.exists() else {}))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)

    return apply


def _other_sae(root: Path, good: dict) -> None:
    """metrics.json of another SAE (n = 256 beside a run whose config says n = 64)."""
    other = write_sae(root / "elsewhere", n_scale=16, seed=5)
    write_json(root / "eval" / "a" / "metrics.json", {**complete_metrics(other, good["images"]), "n_latents": 256})


# name -> (what to break in a good report input, regexes of the message)
REPORT_CASES: dict[str, tuple[Callable[[Path, dict], None], tuple[str, ...]]] = {
    "metrics-not-json": (_break("eval/a/metrics.json", "{"), ("metrics.json", "not valid JSON")),
    "metrics-a-list": (_break("eval/a/metrics.json", "[1]"), ("metrics.json", "expected a JSON object")),
    "metrics-missing": (lambda r, g: (r / "eval" / "a" / "metrics.json").unlink(), ("metrics.json not found",)),
    "metrics-partial": (
        _break("eval/a/metrics.json", lambda m: {k: v for k, v in m.items() if k not in ("dense", "sparse")}),
        ("metrics.json", "dense"),
    ),
    "metrics-without-identity": (
        _break("eval/a/metrics.json", lambda m: {k: v for k, v in m.items() if k != "identity"}),
        ("metrics.json", "no 'identity' block"),
    ),
    "metrics-of-another-sae": (_other_sae, ("metrics.json", "computed from another sae")),
    "config-wrong-type": (
        _break("runs/a/config.json", lambda c: {**c, "k": "four"}),
        ("config.json", "k: 'four'"),
    ),
    "train-log-missing-columns": (
        _break("runs/a/train_log.csv", "step,loss\n1,0.5\n"),
        ("train_log.csv", "missing column"),
    ),
    "progressive-missing-columns": (
        _break("eval/a/progressive.csv", "k\n4\n"),
        ("progressive.csv", "missing column"),
    ),
    "concepts-summary-not-json": (_break("concepts/a/summary.json", "{oops"), ("summary.json", "not valid JSON")),
    "probe-summary-a-list": (
        _break("probes/a/bias/summary.json", "[]"),
        ("summary.json", "expected a JSON object"),
    ),
}


@pytest.mark.parametrize("name", sorted(REPORT_CASES))
def test_report_refuses_broken_or_foreign_results(good, tmp_path, name):
    change, patterns = REPORT_CASES[name]
    runs, evals = _runs(tmp_path, good)
    change(tmp_path, good)
    out = old_output(tmp_path / "out" / "report", "summary.json")
    args = ["report", "--runs", runs, "--eval", evals, "--concepts", tmp_path / "concepts"]
    args += ["--probes", tmp_path / "probes", "--out", out]
    expect_refusal(tmp_path, args, patterns)


# ------------------------------------------------------------------ probes: --concepts and --queries
def _latents(content: bytes | pd.DataFrame) -> Callable[[Path], Path]:
    def make(root: Path) -> Path:
        path = root / "latents.parquet"
        path.write_bytes(content) if isinstance(content, bytes) else content.to_parquet(path)
        return path

    return make


PROBE_CASES = {
    "concepts-not-parquet": (
        _latents(b"not parquet"),
        ("--concept", "red"),
        ("latents.parquet", "not a readable Parquet"),
    ),
    "concepts-missing-columns": (
        _latents(pd.DataFrame({"latent": [0]})),
        ("--concept", "red"),
        ("latents.parquet", "missing column.*name, valid"),
    ),
    "concept-name-unknown": (None, ("--concept", "magenta"), ("--concept 'magenta'", "no valid latent has this name")),
    "concept-id-out-of-range": (None, ("--concept", "999"), ("--concept 999", "out of range")),
    "queries-file-not-utf8": (
        None,
        ("--concept", "0", "--queries", "@{root}/ids.txt"),
        ("ids.txt", "not UTF-8 text", "at byte 3"),
    ),
    "queries-file-missing": (None, ("--concept", "0", "--queries", "@{root}/none.txt"), ("none.txt", "not found")),
    "query-id-unknown": (None, ("--concept", "0", "--queries", "nosuchitem"), ("nosuchitem",)),
}


@pytest.mark.parametrize("name", sorted(PROBE_CASES))
def test_similarity_refuses_broken_concepts_and_queries(good, tmp_path, name):
    make, options, patterns = PROBE_CASES[name]
    latents = make(tmp_path) if make else good["latents"]
    (tmp_path / "ids.txt").write_bytes(b"ite\xe9m\n")
    options = tuple(o.replace("{root}", str(tmp_path)) for o in options)
    out = old_output(tmp_path / "out" / "similarity", "summary.json")
    args = ["probe", "similarity", "--sae", good["sae"], "--embeddings", good["images"], "--concepts", latents]
    args += [*options, "--out", out, *CPU]
    expect_refusal(tmp_path, args, patterns)


# ------------------------------------------------------------------ --out that cannot be written
def _writers(good: dict, out: Path) -> dict[str, list]:
    """command -> command line writing `out`."""
    return {
        "gather": ["gather", "--out", out, good["images"]],
        "mix": ["mix", "--image", good["images"], "--text", good["captions"], "--out", out],
        "vocab": ["vocab", "--out", out, "--n-common", "0"],
        "stability": ["stability", good["sae"], good["sae"], "--out", out],
        "embed": ["embed", "--source", "terms", "--root", good["terms"], "--model", "msae-world",
                  "--pretrained", "builtin", "--out", out, *CPU],
        "probe bias": ["probe", "bias", "--sae", good["sae"], "--train", good["images"], "--test", good["images"],
                       "--target-column", "attr_big", "--candidates", "0", "--out", out, *CPU],
        "probe similarity": ["probe", "similarity", "--sae", good["sae"], "--embeddings", good["images"],
                             "--concept", "0", "--queries", "item000", "--out", out, *CPU],
        "export": ["export", "--format", "saelens", "--sae", good["sae"], "--out", out],
        "import": ["import", "saelens", str(good["root"] / "export"), "--out", out],
        "concepts": ["concepts", "--sae", good["sae"], "--vocab", good["vocab"], "--images", good["images"],
                     "--out", out, "--null-samples", "10", *CPU],
        "evaluate": ["evaluate", "--sae", good["sae"], "--embeddings", good["images"], "--out", out, *CPU],
    }  # fmt: skip


FILE_WRITERS = ("gather", "mix", "vocab", "stability", "embed")
FOLDER_WRITERS = ("probe bias", "probe similarity", "export", "import", "concepts", "evaluate")


@pytest.fixture(scope="module")
def exported(good):
    from hostile_fixtures import run_cli

    assert run_cli(["export", "--format", "saelens", "--sae", good["sae"], "--out", good["root"] / "export"]).code == 0
    return good


@pytest.mark.parametrize("command", FILE_WRITERS)
def test_file_output_that_is_a_folder_is_refused(exported, tmp_path, command):
    out = tmp_path / "out" / "taken"
    (out / "inside").mkdir(parents=True)
    (out / "inside" / "keep.txt").write_text("kept")
    line = _writers(exported, out)[command]
    expect_refusal(tmp_path, line, ["taken", "is a folder; give the path of a file"])


@pytest.mark.parametrize("command", FOLDER_WRITERS)
def test_folder_output_that_is_a_file_is_refused(exported, tmp_path, command):
    out = old_output(tmp_path / "out" / "taken")
    line = _writers(exported, out)[command]
    expect_refusal(tmp_path, line, ["taken", "exists and is not a folder"])


@pytest.mark.parametrize("command", FILE_WRITERS + FOLDER_WRITERS)
def test_output_under_a_file_is_refused(exported, tmp_path, command):
    blocker = old_output(tmp_path / "out" / "file")
    line = _writers(exported, blocker / "result")[command]
    patterns = ["file/result", "a parent of the path is a file|exists and is not a folder|not a directory"]
    expect_refusal(tmp_path, line, patterns)
