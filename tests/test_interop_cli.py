"""`msae import official|saelens|sparsify`, `msae export`, `msae push` through the command line:
an official checkpoint (tests/data/official_msae) imported, exported and imported back gives the
official model's outputs at every step, and every bad input exits 2 naming it, leaving the output
as it was."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from hostile_checks import expect_refusal, old_output
from hostile_fixtures import run_cli
from safetensors.torch import load_file

from msae.sae import load

DATA = Path(__file__).parent / "data" / "official_msae"
TOPK = "64_16_TopKReLU_4_False_False_0.0_synthetic_train_2048_16"
RELU = "64_16_ReLU_003_False_False_0.0_synthetic_train_2048_16"
BATCHTOPK = "64_16_BatchTopKReLU_4_False_False_0.0_synthetic_train_2048_16"


def _ok(*args: object) -> str:
    answer = run_cli(args)
    assert answer.code == 0, answer.stderr[-1500:]
    return answer.stdout


def _official_latents(stem: str) -> tuple[torch.Tensor, torch.Tensor]:
    ref = load_file(str(DATA / f"{stem}.outputs.safetensors"))
    return ref["x"], ref.get("latents_dense", ref.get("latents"))


@pytest.mark.parametrize(("stem", "formats"), [(TOPK, ("saelens", "sparsify")), (RELU, ("saelens",))])
def test_official_checkpoint_round_trips_through_the_cli(tmp_path, stem, formats):
    """import official -> (export FORMAT --dtype float64 -> import FORMAT)*: every run computes the
    official model's dense latents, and the last equals the first to the bit."""
    first = tmp_path / "official"
    out = _ok("import", "official", DATA / f"{stem}.pth", "--out", first, "--model", "ViT-B-32", "--pretrained", "x")
    assert str(first) in out
    x, dense = _official_latents(stem)
    runs = [first]
    for fmt in formats:
        exported, back = tmp_path / f"{fmt}_export", tmp_path / f"{fmt}_back"
        _ok("export", "--format", fmt, "--sae", runs[-1], "--out", exported, "--dtype", "float64")
        _ok("import", fmt, exported, "--out", back)
        runs.append(back)
    for run in runs:
        got = load(run).encode_dense(x)
        assert float((got - dense).abs().max()) <= 1e-6 * float(dense.abs().max()), run.name
    a, b = load_file(str(first / "model.safetensors")), load_file(str(runs[-1] / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    config = json.loads((runs[-1] / "config.json").read_text())
    source, chain = config["source"], []
    while source is not None:  # each import records where the file it read came from
        chain.append(source["format"])
        source = source.get("origin")
    assert config["data"]["model"] == "ViT-B-32" and chain[-1] == "official-msae" and len(chain) == len(runs)


def test_batchtopk_threshold_option(tmp_path):
    _ok("import", "official", DATA / f"{BATCHTOPK}.pth", "--out", tmp_path / "run", "--threshold", "0.5")
    assert json.loads((tmp_path / "run" / "config.json").read_text())["source"]["threshold"] == 0.5


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("exported")
    run = root / "run"
    _ok("import", "official", DATA / f"{TOPK}.pth", "--out", run)
    for fmt in ("saelens", "sparsify"):
        _ok("export", "--format", fmt, "--sae", run, "--out", root / fmt)
    return {"run": run, "saelens": root / "saelens", "sparsify": root / "sparsify", "relu": root / "relu"}


def _copy(source: Path, dest: Path) -> Path:
    shutil.copytree(source, dest) if source.is_dir() else shutil.copy(source, dest)
    return dest


def _truncated_pth(tmp: Path) -> Path:
    path = _copy(DATA / f"{TOPK}.pth", tmp / f"{TOPK}.pth")
    path.write_bytes(path.read_bytes()[:300])
    return path


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


def _pickled_code(tmp: Path) -> Path:
    good = torch.load(DATA / f"{TOPK}.pth", weights_only=False)  # trusted test data
    path = tmp / f"{TOPK}.pth"
    torch.save({**good, "mean_center": _RunsCode(tmp / "ran")}, path)
    return path


def _folder_with(fmt: str, name: str, text: str | None):
    def make(tmp: Path, files: dict) -> Path:
        folder = _copy(files[fmt], tmp / f"bad_{fmt}")
        if text is None:
            (folder / name).unlink()
        else:
            (folder / name).write_text(text)
        return folder

    return make


# name -> (argv builder, regexes of the message)
CASES = {
    "official-truncated": (lambda t, f: ["import", "official", _truncated_pth(t)], (TOPK, "weights-only|cannot")),
    "official-pickled-code": (lambda t, f: ["import", "official", _pickled_code(t)], (TOPK, "GLOBAL exec")),
    "official-unknown-name": (
        lambda t, f: ["import", "official", _copy(DATA / f"{TOPK}.pth", t / "model.pth")],
        ("model.pth", "cannot read the architecture from the file name"),
    ),
    "official-missing": (
        lambda t, f: ["import", "official", t / "nowhere.pth"],
        ("nowhere.pth", "no such checkpoint file"),
    ),
    "official-threshold-on-topk": (
        lambda t, f: ["import", "official", DATA / f"{TOPK}.pth", "--threshold", "0.5"],
        ("not a BatchTopK checkpoint",),
    ),
    "official-half-backbone": (
        lambda t, f: ["import", "official", DATA / f"{TOPK}.pth", "--model", "ViT-B-32"],
        ("--model and --pretrained", "give both or neither"),
    ),
    "official-negative-threshold": (
        lambda t, f: ["import", "official", DATA / f"{BATCHTOPK}.pth", "--threshold", "-1"],
        ("--threshold", "greater than or equal to 0"),
    ),
    "saelens-cfg-not-json": (
        lambda t, f: ["import", "saelens", _folder_with("saelens", "cfg.json", "{oops")(t, f)],
        ("cfg.json", "not valid JSON"),
    ),
    "saelens-no-weights": (
        lambda t, f: ["import", "saelens", _folder_with("saelens", "sae_weights.safetensors", None)(t, f)],
        ("sae_weights.safetensors",),
    ),
    "saelens-truncated-weights": (
        lambda t, f: ["import", "saelens", _folder_with("saelens", "sae_weights.safetensors", "x" * 40)(t, f)],
        ("sae_weights.safetensors", "cannot read the weights"),
    ),
    "sparsify-cfg-a-list": (
        lambda t, f: ["import", "sparsify", _folder_with("sparsify", "cfg.json", "[1]")(t, f)],
        ("cfg.json", "expected a JSON object"),
    ),
    "sparsify-of-a-folder-of-nothing": (
        lambda t, f: ["import", "sparsify", (t / "empty").mkdir() or t / "empty"],
        ("empty", "cfg.json"),
    ),
    "export-unfinished-run": (
        lambda t, f: ["export", "--format", "saelens", "--sae", _folder_with("run", "config.json", None)(t, f)],
        ("bad_run", "not a finished SAE run"),
    ),
    "export-unknown-format": (
        lambda t, f: ["export", "--format", "onnx", "--sae", f["run"]],
        ("--format", "onnx"),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_interop_input_is_refused(exported, tmp_path, name):
    build_args, patterns = CASES[name]
    out = old_output(tmp_path / "out" / "result", "config.json")
    args = [*build_args(tmp_path, exported), "--out", out]
    expect_refusal(tmp_path, args, patterns)
    assert not (tmp_path / "ran").exists(), "pickled code ran"


def test_sparsify_export_of_a_threshold_run_is_refused(tmp_path):
    run = tmp_path / "batchtopk"
    _ok("import", "official", DATA / f"{BATCHTOPK}.pth", "--out", run)
    out = old_output(tmp_path / "out" / "sparsify", "cfg.json")
    args = ["export", "--format", "sparsify", "--sae", run, "--out", out]
    expect_refusal(tmp_path, args, ["'batchtopk' has no sparsify form"])


@pytest.mark.parametrize(
    ("extra", "patterns"),
    [
        (("--repo", "not a repo"), ("--repo", "'not a repo'")),
        (("--repo", "me/sae", "--eval", "{tmp}/no_eval"), ("no_eval", "metrics.json", "run msae evaluate first")),
    ],
)
def test_push_refuses_before_any_upload(exported, tmp_path, extra, patterns):
    """Bad input to `msae push` is refused before the Hub is contacted (no network here)."""
    extra = tuple(e.replace("{tmp}", str(tmp_path)) for e in extra)
    expect_refusal(tmp_path, ["push", "--sae", exported["run"], *extra], patterns)
