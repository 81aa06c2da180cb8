"""Bad-input matrix, input class "stores" (issue 14): every way an embedding store can be broken
× every command that reads one. Each case: exit 2, a message naming the store (and the ids or
key), no output created or changed (tests/hostile_checks.py)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from hostile_checks import expect_refusal, old_output
from hostile_fixtures import BAD_STORES, bad_store, build

CPU = ("--device", "cpu")


# slot -> (command line for a store at `bad` and an output at `out`, the store it stands in for,
#          the output's done file (None: a single file), the modality the slot needs)
Slot = tuple[Callable[[dict, Path, Path], list], str, str | None, str | None]
TRAIN = "--variant topk --k 4 --expansion 2 --epochs 1 --batch-size 16".split()
BIAS = "--target-column attr_big --candidates 0".split()
SLOTS: dict[str, Slot] = {
    "evaluate --embeddings": (
        lambda g, b, o: ["evaluate", "--sae", g["sae"], "--embeddings", b, "--out", o, *CPU],
        "images", "metrics.json", "image",
    ),
    "train --embeddings": (
        lambda g, b, o: ["train", "--embeddings", b, *TRAIN, "--out", o, *CPU], "images", "config.json", None,
    ),
    "concepts --images": (
        lambda g, b, o: ["concepts", "--sae", g["sae"], "--vocab", g["vocab"], "--images", b, "--out", o, *CPU],
        "images", "summary.json", "image",
    ),
    "concepts --vocab": (
        lambda g, b, o: ["concepts", "--sae", g["sae"], "--vocab", b, "--images", g["images"], "--out", o, *CPU],
        "vocab", "summary.json", "text",
    ),
    "concepts --captions": (
        lambda g, b, o: ["concepts", "--sae", g["sae"], "--vocab", g["vocab"], "--images", g["images"],
                         "--captions", b, "--out", o, *CPU],
        "captions", "summary.json", "text",
    ),
    "probe similarity --embeddings": (
        lambda g, b, o: ["probe", "similarity", "--sae", g["sae"], "--embeddings", b, "--concept", "0",
                         "--queries", "random:2", "--out", o, *CPU],
        "images", "summary.json", None,
    ),
    "probe bias --train": (
        lambda g, b, o: ["probe", "bias", "--sae", g["sae"], "--train", b, "--test", g["images"], *BIAS,
                         "--out", o, *CPU],
        "images", "summary.json", "image",
    ),
    "probe bias --test": (
        lambda g, b, o: ["probe", "bias", "--sae", g["sae"], "--train", g["images"], "--test", b, *BIAS,
                         "--out", o, *CPU],
        "images", "summary.json", "image",
    ),
    "gather": (lambda g, b, o: ["gather", "--out", o, b], "images", None, None),
    "mix --image": (
        lambda g, b, o: ["mix", "--image", b, "--text", g["captions"], "--out", o], "images", None, "image",
    ),
    "mix --text": (lambda g, b, o: ["mix", "--image", g["images"], "--text", b, "--out", o], "captions", None, "text"),
}  # fmt: skip
NEEDS_SAE = {s for s in SLOTS if not s.startswith(("train", "gather"))}
# the store problems a slot cannot have: gather and train accept any width and backbone
NOT_APPLICABLE = {("other-backbone", s) for s in SLOTS if s not in NEEDS_SAE}
NOT_APPLICABLE |= {("wrong-dim", s) for s in SLOTS if s not in NEEDS_SAE}
CASES = [(name, slot) for name in BAD_STORES for slot in SLOTS if (name, slot) not in NOT_APPLICABLE]
MODALITY_CASES = [slot for slot, spec in SLOTS.items() if spec[3] is not None]


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return build(tmp_path_factory.mktemp("good"))


def _output(slot: str, case: Path) -> Path:
    done = SLOTS[slot][2]
    return old_output(case / "out" / ("result" if done else "result.parquet"), done)


@pytest.mark.parametrize(("problem", "slot"), CASES, ids=[f"{p}|{s}" for p, s in CASES])
def test_broken_store_is_refused(good, tmp_path, problem, slot):
    command, stands_for, _, _ = SLOTS[slot]
    bad, message = bad_store(problem, good[stands_for], tmp_path / f"bad_{stands_for}.parquet")
    out = _output(slot, tmp_path)
    expect_refusal(tmp_path, command(good, bad, out), [re.escape(bad.name), message])


@pytest.mark.parametrize("slot", MODALITY_CASES)
def test_store_of_the_other_modality_is_refused(good, tmp_path, slot):
    """A text store where images are expected, and an image store where text is (a caption store
    given as --images trains, evaluates or probes the wrong thing without an error otherwise)."""
    command, stands_for, _, wanted = SLOTS[slot]
    other = {"image": "captions", "text": "images"}[wanted]
    out = _output(slot, tmp_path)
    patterns = [re.escape(good[other].name), f"expected {wanted} embeddings here"]
    expect_refusal(tmp_path, command(good, good[other], out), patterns)
