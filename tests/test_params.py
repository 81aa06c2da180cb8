"""params.yaml validation: good files pass, each kind of mistake is refused naming the bad key,
option sections render exactly as DVC renders them, and every key is a real `msae` option."""

from __future__ import annotations

import copy
import shlex
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from msae.cli import build_parser
from msae.errors import MsaeError
from msae.pipeline.params import embedding_dim, load_params, options, section_type, stores, validate_params
from msae.pipeline.stages import option_sections

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = yaml.safe_load((ROOT / "params.yaml").read_text())
EXAMPLES = sorted((ROOT / "configs").glob("*.yaml"))


def refused(params: dict) -> str:
    with pytest.raises(MsaeError) as exc:
        validate_params(params)
    return str(exc.value)


def edited(change) -> dict:
    params = copy.deepcopy(DEFAULT)
    change(params)
    return params


def test_default_params_are_valid():
    assert load_params(ROOT / "params.yaml")["runs"]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_configs_are_valid(path):
    assert load_params(path)["runs"]


def test_default_runs_cover_the_paper_comparison():
    """Table 1 on image embeddings, a text-trained MSAE for Table 2, baselines at the SAEs' k = 8,
    one run at several seeds; every run evaluated on captions too."""
    image = {name: r for name, r in DEFAULT["runs"].items() if r["embeddings"].endswith("train_image.parquet")}
    variants = [run["variant"] for run in image.values()]
    for variant in ("relu", "topk", "batchtopk"):
        assert variants.count(variant) == 2, variant
    assert sorted(r["weighting"] for r in image.values() if r["variant"] == "matryoshka") == ["rw", "uw"]
    text = [r for r in DEFAULT["runs"].values() if r["embeddings"].endswith("train_text.parquet")]
    assert [(r["variant"], r["weighting"]) for r in text] == [("matryoshka", "rw")]
    assert len({r["expansion"] for r in DEFAULT["runs"].values()}) == 1
    assert DEFAULT["data"]["language"] and set(DEFAULT["data"]["language"]) <= set(DEFAULT["data"]["captions"])
    assert {b["method"] for b in DEFAULT["baselines"].values()} >= {"pca", "dictionary"}
    assert DEFAULT["stability"]["runs"] and len(DEFAULT["stability"]["seeds"]) >= 2
    assert DEFAULT["probes"]["bias_control"]["train"].endswith("bias_control_image.parquet")
    assert {k: v for k, v in DEFAULT["probes"]["bias_control"].items() if k != "train"} == {
        k: v for k, v in DEFAULT["probes"]["bias"].items() if k != "train"
    }


@pytest.mark.parametrize(
    ("change", "key", "words"),
    [
        (lambda p: p["runs"]["topk_k8"].update(variant="gated"), "runs.topk_k8.variant", "choose one of relu"),
        (lambda p: p["runs"]["topk_k8"].update(k=1025), "runs.topk_k8.k", "n = int(expansion x d) = 1024"),
        (lambda p: p["runs"]["topk_k8"].pop("k"), "runs.topk_k8.k", "missing"),
        (lambda p: p["runs"]["relu_l1_lo"].pop("l1"), "runs.relu_l1_lo.l1", "missing"),
        (lambda p: p["runs"]["matryoshka_rw"].pop("weighting"), "runs.matryoshka_rw.weighting", "missing"),
        (lambda p: p["runs"]["topk_k8"].pop("lr"), "runs.topk_k8.lr", "missing"),
        (lambda p: p["worlds"]["shapes"].pop("seed"), "worlds.shapes.seed", "missing"),
        (lambda p: p.pop("evaluate"), "evaluate", "missing"),
        (lambda p: p["runs"].update({"topk-8": p["runs"]["topk_k8"]}), "runs.topk-8", "identifier"),
        (lambda p: p["runs"].update({"8topk": p["runs"]["topk_k8"]}), "runs.8topk", "identifier"),
        (lambda p: p["runs"]["topk_k8"].update(epoch=3), "runs.topk_k8.epoch", "unknown option"),
        (lambda p: p["runs"]["topk_k8"].update(k=0), "runs.topk_k8.k", "greater than or equal to 1"),
        (lambda p: p["runs"]["topk_k8"].update(k="8"), "runs.topk_k8.k", "valid integer"),
        (
            lambda p: p["runs"]["matryoshka_rw"].update(**{"nesting-start": 2048}),
            "runs.matryoshka_rw.nesting-start",
            "n = 1024",
        ),
        (
            lambda p: (
                p["runs"]["matryoshka_rw"].update(nesting="8,4,1024") or p["runs"]["matryoshka_rw"].pop("nesting-start")
            ),
            "runs.matryoshka_rw.nesting",
            "increase",
        ),
        (
            lambda p: p["runs"]["matryoshka_rw"].update(nesting="8,1024"),
            "runs.matryoshka_rw.nesting",
            "either nesting or nesting-start",
        ),
        (lambda p: p["embed"].update(shards=["0/4", "1/4"]), "embed.shards", "0/4, 1/4, 2/4, 3/4"),
        (lambda p: p["embed"].update(shards=["0/2", "1/3"]), "embed.shards", "one count"),
        (
            lambda p: p["evaluate"].update(embeddings="results/embeddings/shapes/val_image.parquet"),
            "evaluate.embeddings",
            "not a file the pipeline makes",
        ),
        (lambda p: p["data"].update(language=["val"]), "data.language", "no caption store"),
        (lambda p: p["data"].update(both=["bias_train"]), "data.both", "not in data.captions"),
        (lambda p: p["data"].update(both=["val"]), "data.both", "not in data.images and data.captions"),
        (
            lambda p: p["runs"]["topk_k8"].update(embeddings="results/embeddings/shapes/val_text.parquet"),
            "runs.topk_k8.embeddings",
            "not a file the pipeline makes",
        ),
        (lambda p: p["runs"]["topk_k8"].pop("embeddings"), "runs.topk_k8.embeddings", "missing"),
        (lambda p: p["stability"].update(runs=["nope"]), "stability.runs", "not a run"),
        (lambda p: p["stability"].update(seeds=[0, 1]), "stability.seeds", "own seed of runs.topk_k8"),
        (lambda p: p["stability"].update(seeds=[1, 1]), "stability.seeds", "twice"),
        (lambda p: p["stability"].update(threshold=2), "stability.threshold", "less than or equal to 1"),
        (lambda p: p["baselines"]["pca8"].update(method="svd"), "baselines.pca8.method", "svd"),
        (lambda p: p["baselines"]["omp8"].pop("k"), "baselines.omp8.k", "required by method dictionary"),
        (lambda p: p["baselines"].update({"pca-8": p["baselines"]["pca8"]}), "baselines.pca-8", "identifier"),
        (lambda p: p["probes"].pop("bias_control"), "probes.bias_control", "missing"),
        (lambda p: p["evaluate"].update(device="gpu"), "evaluate.device", "should match pattern"),
    ],
)
def test_bad_params_are_refused_naming_the_key(change, key, words):
    message = refused(edited(change))
    assert f"{key}:" in message and words in message, message


def test_several_problems_are_listed_together():
    def two_bad(p):
        p["runs"]["topk_k8"].pop("k")
        p["runs"]["topk_k32"]["variant"] = "nope"

    message = refused(edited(two_bad))
    assert "runs.topk_k8.k" in message and "runs.topk_k32.variant" in message


def test_unreadable_files_are_named(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("runs: [unclosed\n")
    with pytest.raises(MsaeError, match="params.yaml: not valid YAML"):
        load_params(bad)
    with pytest.raises(MsaeError, match="cannot read"):
        load_params(tmp_path / "missing.yaml")


def test_embedding_dim_from_model_configs_without_torch():
    assert embedding_dim("msae-world") == 128
    assert embedding_dim("ViT-B-32") == 512
    assert embedding_dim("no-such-model") is None


def test_stores_follow_the_data_section():
    assert stores(DEFAULT) == [
        "results/embeddings/shapes/train_image.parquet",
        "results/embeddings/shapes/test_image.parquet",
        "results/embeddings/shapes/bias_train_image.parquet",
        "results/embeddings/shapes/bias_control_image.parquet",
        "results/embeddings/shapes/train_text.parquet",
        "results/embeddings/shapes/test_text.parquet",
        "results/embeddings/shapes/prompts_shape.parquet",
    ]


# --- option rendering: DVC's own `${dict}` unpacking is the reference ------------------------

option_keys = st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True)
option_values = st.one_of(
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(min_size=1, max_size=12),
    st.lists(st.one_of(st.integers(0, 99), st.text(min_size=1, max_size=8)), min_size=1, max_size=3),
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(option_keys, option_values, max_size=6))
def test_options_render_exactly_like_dvc(section):
    from dvc.parsing.interpolate import to_str

    assert options(section) == to_str(section, config={"list": "append", "bool": "store_true"})


def test_options_examples():
    assert options({"k": 8, "lr": 0.0004, "bf16": True, "resume": False}) == "--k 8 --lr 0.0004 --bf16"
    assert options({"template": ["a {} shape", "b"]}) == "--template 'a {} shape' --template b"


def test_dvc_config_sets_list_append():
    config = (ROOT / ".dvc" / "config").read_text()
    assert "[parsing]" in config and "list = append" in config


# --- every key of an option section is a real option of its command ---------------------------


def _subparser(path: tuple[str, ...]):
    parser = build_parser()
    for name in path:
        action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
        parser = action.choices[name]
    return parser


def _section_keys(path: str) -> set[str]:
    kind = section_type(path)
    members = [kind] if hasattr(kind, "model_fields") else [m for m in kind.__args__[0].__args__]
    return {info.alias for m in members for info in m.model_fields.values()}


@pytest.mark.parametrize("section", option_sections(), ids=lambda s: s.path)
def test_schema_keys_are_options_of_the_command(section):
    command = next(
        s.command for s in __import__("msae.pipeline.stages").pipeline.stages.STAGES if section in s.sections
    )
    parser = _subparser(tuple(command.split()))
    known = {s for action in parser._actions for s in action.option_strings}
    unknown = sorted(k for k in _section_keys(section.path) if f"--{k}" not in known)
    assert not unknown, f"{section.path}: not options of `msae {command}`: {unknown}"


@pytest.mark.parametrize("path", [ROOT / "params.yaml", *EXAMPLES], ids=lambda p: p.name)
def test_run_options_parse_with_msae_train(path):
    params = load_params(path)
    parser = build_parser()
    for name, run in params["runs"].items():
        argv = ["train", *shlex.split(options(run)), "--embeddings", "x.parquet", "--out", f"results/sae/{name}"]
        args = parser.parse_args(argv)
        assert args.variant == run["variant"]
