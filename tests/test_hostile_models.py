"""Bad-input matrix, input class "models and checkpoints" (issue 14): broken SAE runs × every
command that loads one, broken CLIP checkpoints × `msae embed`, hostile or broken resumable
states × `msae world train-clip --resume`. Each case: exit 2, a message naming the file (and key),
no output created or changed, and nothing a pickle asked for was run."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hostile_checks import expect_refusal, old_output
from hostile_fixtures import BAD_RUNS, bad_run, build
from safetensors.torch import load_file, save_file

CPU = ("--device", "cpu")
WORLD_CLIP = Path(__file__).resolve().parent.parent / "msae" / "assets" / "msae-world.safetensors"

# command -> (command line for a run at `bad` and an output at `out`, the output's done file or None)
Command = tuple[Callable[[dict, Path, Path], list], str | None]
BIAS = "--target-column attr_big --candidates 0".split()
COMMANDS: dict[str, Command] = {
    "evaluate": (lambda g, b, o: ["evaluate", "--sae", b, "--embeddings", g["images"], "--out", o, *CPU], "metrics.json"),
    "concepts": (
        lambda g, b, o: ["concepts", "--sae", b, "--vocab", g["vocab"], "--images", g["images"], "--out", o, *CPU],
        "summary.json",
    ),
    "probe similarity": (
        lambda g, b, o: ["probe", "similarity", "--sae", b, "--embeddings", g["images"], "--concept", "0",
                         "--queries", "random:2", "--out", o, *CPU],
        "summary.json",
    ),
    "probe bias": (
        lambda g, b, o: ["probe", "bias", "--sae", b, "--train", g["images"], "--test", g["images"], *BIAS,
                         "--out", o, *CPU],
        "summary.json",
    ),
    "stability": (lambda g, b, o: ["stability", b, g["sae"], "--out", o], None),
    "export saelens": (lambda g, b, o: ["export", "--format", "saelens", "--sae", b, "--out", o], "cfg.json"),
    "export sparsify": (lambda g, b, o: ["export", "--format", "sparsify", "--sae", b, "--out", o], "cfg.json"),
    "push": (lambda g, b, o: ["push", "--sae", b, "--repo", "someone/nothing"], None),
}  # fmt: skip
CASES = [(run, command) for run in BAD_RUNS for command in COMMANDS]


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return build(tmp_path_factory.mktemp("good"))


@pytest.mark.parametrize(("problem", "command"), CASES, ids=[f"{p}|{c}" for p, c in CASES])
def test_broken_run_is_refused(good, tmp_path, problem, command):
    line, done = COMMANDS[command]
    bad, message = bad_run(problem, good["sae"], tmp_path / "bad_run")
    out = old_output(tmp_path / "out" / ("result" if done else "result.json"), done)
    expect_refusal(tmp_path, line(good, bad, out), ["bad_run", message])


# ------------------------------------------------------------------ CLIP checkpoints (--pretrained)
class RunsCode:
    """Unpickling this runs `touch <marker>`: the classic payload of a malicious checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _world_state() -> dict:
    return load_file(str(WORLD_CLIP))


def _truncated(source: Path, dest: Path) -> Path:
    dest.write_bytes(source.read_bytes()[: source.stat().st_size // 3])
    return dest


CHECKPOINTS: dict[str, Callable[[Path], Path]] = {
    "other-architecture.safetensors": lambda d: (save_file({"w": torch.zeros(3)}, str(d)), d)[1],
    "other-architecture.pt": lambda d: (torch.save({"w": torch.zeros(3)}, d), d)[1],
    "wrong-shapes.safetensors": lambda d: (
        save_file({**_world_state(), "ln_final.bias": torch.zeros(3, dtype=torch.float16)}, str(d)),
        d,
    )[1],
    "truncated.safetensors": lambda d: _truncated(WORLD_CLIP, d),
    "truncated.pt": lambda d: (torch.save(_world_state(), d), _truncated(d, d))[1],
    "not-a-state-dict.pt": lambda d: (torch.save([1, 2, 3], d), d)[1],
    "pickled-code.pt": lambda d: (torch.save({"w": RunsCode(d.with_suffix(".ran"))}, d), d)[1],
}


@pytest.mark.parametrize("name", sorted(CHECKPOINTS))
def test_broken_clip_checkpoint_is_refused(good, tmp_path, name):
    checkpoint = CHECKPOINTS[name](tmp_path / name)
    out = old_output(tmp_path / "out" / "terms.parquet")
    args = ["embed", "--source", "terms", "--root", good["terms"], "--model", "msae-world"]
    args += ["--pretrained", checkpoint, "--out", out, *CPU]
    expect_refusal(tmp_path, args, [re.escape(name), "not a checkpoint open_clip can load for --model msae-world"])
    assert not checkpoint.with_suffix(".ran").exists(), "the pickled command ran"


# ------------------------------------------------------------------ world CLIP: train-clip --resume
def _state(path: Path, value: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(value, path)


STATES: dict[str, tuple[Callable[[Path], object], str]] = {
    "pickled-code": (lambda d: {"config": RunsCode(d / "ran"), "step": 1}, "not a training checkpoint msae can read"),
    "not-a-dict": (lambda d: [1, 2, 3], "not a world-CLIP training checkpoint"),
    "keys-missing": (lambda d: {"step": 1}, r"no valid config, model, optimizer, log, elapsed_s"),
    "wrong-types": (
        lambda d: {"config": {}, "step": "1", "model": {}, "optimizer": {}, "log": [], "elapsed_s": 0.0},
        "no valid step",
    ),
}


@pytest.mark.parametrize("name", sorted(STATES))
def test_hostile_training_state_is_refused_and_never_run(tmp_path, name):
    """`--resume` unpickles with weights_only=True: a crafted state.pt whose __reduce__ would run a
    command is refused (exit 2), and the command does not run."""
    make, message = STATES[name]
    out = old_output(tmp_path / "out" / "clip.safetensors")
    _state(tmp_path / "out" / "clip.checkpoints" / "state.pt", make(tmp_path))
    args = ["world", "train-clip", "--out", out, "--resume", "--steps", "2", "--batch-size", "4"]
    args += ["--n-train", "8", "--warmup", "0", *CPU]
    expect_refusal(tmp_path, args, [re.escape(str(Path("clip.checkpoints") / "state.pt")), message])
    assert not (tmp_path / "ran").exists(), "the pickled command ran"


def test_truncated_training_state_is_refused(tmp_path):
    out = old_output(tmp_path / "out" / "clip.safetensors")
    state = tmp_path / "out" / "clip.checkpoints" / "state.pt"
    _state(state, {"config": {}, "step": 1, "model": {"w": torch.zeros(1000)}})
    state.write_bytes(state.read_bytes()[:200])
    args = ["world", "train-clip", "--out", out, "--resume", "--steps", "2", "--batch-size", "4"]
    args += ["--n-train", "8", "--warmup", "0", *CPU]
    expect_refusal(tmp_path, args, ["state.pt", "not a training checkpoint msae can read safely"])


SOURCE = Path(__file__).resolve().parent.parent
CODE_EXECUTION = {
    "weights_only=False": re.compile(r"weights_only\s*=\s*False"),
    "torch.load without weights_only=True": re.compile(r"torch\.load\((?![^)]*weights_only\s*=\s*True)[^)]*\)"),
    "shell=True": re.compile(r"shell\s*=\s*True"),
    "eval/exec of a string": re.compile(r"(?<![.\w])(eval|exec)\("),
    "pickle": re.compile(r"\bpickle\.loads?\(|\bjoblib\.load\("),
    "os.system": re.compile(r"\bos\.(system|popen)\("),
}


def test_no_source_file_can_run_code_from_data():
    """What a search of msae/ and workflow/ must not find (issue 14): pickle loading, a shell
    interpreting a string, eval/exec. (`model.eval()` is a method and does not match.)"""
    files = [*(SOURCE / "msae").rglob("*.py"), *(SOURCE / "workflow").rglob("*"), SOURCE / "Snakefile"]
    found = [
        f"{path.relative_to(SOURCE)}:{number}: {what}"
        for path in files
        if path.is_file() and path.suffix not in (".pyc", ".png")
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1)
        for what, pattern in CODE_EXECUTION.items()
        if pattern.search(line) and not line.lstrip().startswith("#")
    ]
    assert not found, "\n".join(found)
