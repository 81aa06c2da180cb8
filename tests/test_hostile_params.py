"""Bad-input matrix, input class "parameters" (issue 14): hostile values in params.yaml × the
check and the two generated pipelines. A value that reaches a shell command line is either refused
by `msae params check` (naming its key) or arrives in the job's argv as exactly one word, the value
itself, in both Snakemake and DVC; an ordinary path with spaces works end to end."""

from __future__ import annotations

import copy
import shlex
from pathlib import Path

import pytest
import yaml
from dvc.parsing.interpolate import to_str
from hostile_checks import expect_refusal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pipeline_support import ROOT, copy_project, normalise

from msae.errors import MsaeError
from msae.pipeline.jobs import dvc_steps, snakemake_steps
from msae.pipeline.params import options, validate_params

DEFAULT = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
# Values pasted into one quoted shell word by the generated files (`--root '${data.root}'` in
# dvc.yaml, `{params.x:q}` in the Snakefile): the schema must refuse whatever could end the word.
QUOTED_KEYS = ("data.root", "concepts.images")
SHELL = "'\"`$\\;|&<>(){}[]*?!#~ \t\n\r\x0b\x0c\x7f"
hostile_text = st.text(
    alphabet=st.one_of(st.sampled_from(SHELL), st.characters(blacklist_characters="\x00")), min_size=1, max_size=24
)


def with_value(params: dict, key: str, value: object) -> dict:
    changed = copy.deepcopy(params)
    node = changed
    *parents, last = key.split(".")
    for part in parents:
        node = node[part]
    node[last] = value
    return changed


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(QUOTED_KEYS), value=hostile_text)
def test_a_quoted_value_is_refused_or_stays_one_word(key, value):
    try:
        validate_params(with_value(DEFAULT, key, value))
    except MsaeError as exc:
        assert f"{key}:" in str(exc)  # refused, naming the key
        return
    # accepted: single-quoted as dvc.yaml writes it, and as Snakemake's :q quotes it, one word
    assert shlex.split(f"msae --x '{value}' --y") == ["msae", "--x", value, "--y"]
    assert shlex.split(f"msae --x {shlex.quote(value)} --y") == ["msae", "--x", value, "--y"]


@pytest.mark.parametrize("key", QUOTED_KEYS)
@pytest.mark.parametrize("value", ["$(touch PWNED)", "x'; touch PWNED; '", "`touch PWNED`", "a\nb", "a\\b"])
def test_params_check_refuses_values_that_could_leave_their_word(tmp_path, monkeypatch, key, value):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(with_value(DEFAULT, key, value)), encoding="utf-8")
    expect_refusal(tmp_path, ["params", "check", path], ["params.yaml", f"{key}:"])
    assert not (tmp_path / "PWNED").exists()


section_value = st.one_of(
    hostile_text, st.booleans(), st.integers(-(10**6), 10**6), st.lists(hostile_text, min_size=1, max_size=3)
)


@settings(max_examples=200, deadline=None)
@given(section=st.dictionaries(st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True), section_value, max_size=5))
def test_option_sections_become_the_same_argv_in_both_tools(section):
    """An option section (any text, quotes and newlines included) is rendered by msae for the
    Snakefile and by DVC's own `${section}` unpacking; both split to exactly the values."""
    expected: list[str] = []
    for key, value in section.items():
        if isinstance(value, bool):
            expected += [f"--{key}"] if value else []
        elif isinstance(value, list):
            expected += [word for item in value for word in (f"--{key}", item)]
        else:
            expected += [f"--{key}", str(value)]
    assert shlex.split(options(section)) == expected
    assert shlex.split(to_str(section, config={"list": "append"})) == expected


def test_a_run_option_of_another_variant_is_refused_by_the_check():
    """`k` on a relu run used to pass the check and fail only when the job ran."""
    with pytest.raises(MsaeError, match=r"runs\.relu_l1_lo\.k: unknown option for variant relu"):
        validate_params(with_value(DEFAULT, "runs.relu_l1_lo.k", 8))


SPACED = {
    "data.root": "my data/world shapes",
    "concepts.images": "stores from elsewhere/test images.parquet",
    "vocab.blocklist": "lists/block list.txt",
    "data.prompts.shape.template": ["a {}'s shape", 'the "{}" one'],
}


@pytest.fixture(scope="module")
def spaced_project(tmp_path_factory) -> Path:
    root = copy_project(tmp_path_factory.mktemp("spaced") / "project")
    params = copy.deepcopy(DEFAULT)
    for key, value in SPACED.items():
        params = with_value(params, key, value)
    (root / "my data" / "world shapes").mkdir(parents=True)
    for name in ("stores from elsewhere/test images.parquet", "lists/block list.txt"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("")
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    validate_params(params)
    return root


def _argv_values(steps, command: str, option: str) -> list[list[str]]:
    """Every value of `option` on the jobs running `msae ... command`."""
    found = []
    for step in steps:
        argv = list(step.argv)  # msae --log LOG COMMAND ...
        if argv[3] == command:
            found.append([argv[i + 1] for i, word in enumerate(argv) if word == option])
    return found


def test_paths_with_spaces_and_quotes_reach_both_pipelines_as_one_word(spaced_project):
    # the world is rendered elsewhere now: Snakemake skips its (unneeded) job, DVC lists every stage
    smk = snakemake_steps(spaced_project)
    dvc = [s for s in dvc_steps(spaced_project) if s.name != "check_params" and "render" not in s.argv]
    assert normalise(smk) == normalise(dvc)  # both tools run the same argv
    for steps in (smk, dvc):
        roots = _argv_values(steps, "embed", "--root")
        assert [SPACED["data.root"]] in roots and all(len(r) <= 1 for r in roots)
        assert _argv_values(steps, "report", "--images") == [[SPACED["concepts.images"]]]
        assert _argv_values(steps, "vocab", "--blocklist") == [[SPACED["vocab.blocklist"]]]
        assert SPACED["data.prompts.shape.template"] in _argv_values(steps, "embed", "--template")
