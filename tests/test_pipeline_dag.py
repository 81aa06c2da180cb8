"""The Snakefile and dvc.yaml describe one pipeline: same commands, inputs and outputs, for the
default params, after every numeric param changes, and for the example configs. Every command
parses with the real `msae` CLI; the Snakefile is lint-clean; bad params stop both tools first."""

from __future__ import annotations

import copy
import itertools
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml
from pipeline_support import ROOT, both_dags, copy_project, init_dvc_repo, run_tool

from msae import layout
from msae.cli import build_parser
from msae.pipeline.jobs import dvc_steps, snakemake_steps

EXAMPLES = sorted((ROOT / "configs").glob("*.yaml"))
TORCH_STAGES = ("embed", "train", "reseed", "evaluate", "concepts", "probe")


def perturbed(params: dict) -> dict:
    """Every number changed to a value no other number has: ints grow by distinct large steps (so
    sizes stay consistent, e.g. k <= n), floats shrink by distinct small factors (so fractions stay
    in range). A value hard-coded in only one of the two pipeline files then shows as a difference."""
    counter = itertools.count(1)

    def walk(node):
        if isinstance(node, dict):
            return {key: walk(value) for key, value in node.items()}
        if isinstance(node, list):
            return [walk(value) for value in node]
        if isinstance(node, bool) or not isinstance(node, (int, float)):
            return node
        step = next(counter)
        return node + 1000 * step if isinstance(node, int) else node * (1 - step / 997)

    return walk(copy.deepcopy(params))


def with_params(tmp_path: Path, params: dict) -> Path:
    root = copy_project(tmp_path / "project")
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


def assert_same(snakemake: set, dvc: set) -> None:
    only_smk = sorted(snakemake - dvc)
    only_dvc = sorted(dvc - snakemake)
    assert not only_smk and not only_dvc, f"only in Snakemake: {only_smk[:3]}\nonly in DVC: {only_dvc[:3]}"


def test_dags_agree_for_the_default_params():
    snakemake, dvc = both_dags(ROOT)
    assert len(snakemake) > 40
    assert_same(snakemake, dvc)


def test_dags_agree_after_every_numeric_param_is_perturbed(tmp_path):
    default = yaml.safe_load((ROOT / "params.yaml").read_text())
    changed = perturbed(default)
    snakemake, dvc = both_dags(with_params(tmp_path, changed))
    assert_same(snakemake, dvc)
    commands = " ".join(" ".join(argv) for argv, _, _ in snakemake) + " "
    world, run = changed["worlds"]["shapes"], changed["runs"]["topk_k8"]
    for option in (f"--n-train {world['n-train']}", f"--k {run['k']} ", f"--lr {run['lr']} "):
        assert option in commands  # the perturbation took effect
    default_commands = {command for command, _, _ in both_dags(ROOT)[0]}
    assert len({command for command, _, _ in snakemake} & default_commands) < len(default_commands) // 2


def with_local_data(params: dict, data_dir: Path) -> dict:
    """The example configs point at /data/...; stand-ins under `data_dir` let Snakemake build the
    DAG (it needs inputs that no rule makes to exist)."""

    def walk(node):
        if isinstance(node, dict):
            return {key: walk(value) for key, value in node.items()}
        if isinstance(node, list):
            return [walk(value) for value in node]
        if isinstance(node, str) and node.startswith("/data/"):
            local = data_dir / node.removeprefix("/data/")
            if local.suffix:
                local.parent.mkdir(parents=True, exist_ok=True)
                local.touch()
            else:
                local.mkdir(parents=True, exist_ok=True)
            return str(local)
        return node

    return walk(params)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_dags_agree_for_the_example_configs(tmp_path, path):
    params = with_local_data(yaml.safe_load(path.read_text()), tmp_path / "data")
    snakemake, dvc = both_dags(with_params(tmp_path, params))
    assert_same(snakemake, dvc)
    assert not any(argv[3:5] == ("world", "render") for argv, _, _ in snakemake)


def test_the_comparison_catches_a_value_hard_coded_in_one_file(tmp_path):
    """Negative control: a literal copied into dvc.yaml agrees for the defaults only."""
    default = yaml.safe_load((ROOT / "params.yaml").read_text())
    root = copy_project(tmp_path / "project")
    dvc_yaml = root / "dvc.yaml"
    literal = " ".join(f"--{k} {v}" for k, v in default["embed"]["options"].items())
    text = dvc_yaml.read_text()
    assert "--dataset vocab ${backbone} ${embed.options}" in text
    dvc_yaml.write_text(
        text.replace("--dataset vocab ${backbone} ${embed.options}", f"--dataset vocab ${{backbone}} {literal}")
    )
    assert_same(*both_dags(root))
    (root / "params.yaml").write_text(yaml.safe_dump(perturbed(default), sort_keys=False))
    snakemake, dvc = both_dags(root)
    assert snakemake != dvc


def test_sharded_embedding_adds_one_job_per_shard(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["embed"]["shards"] = ["0/3", "1/3", "2/3"]
    root = with_params(tmp_path, params)
    snakemake, dvc = both_dags(root)
    assert_same(snakemake, dvc)
    shard_jobs = [argv for argv, _, _ in snakemake if argv[3] == "embed" and "--shard" in argv]
    assert len(shard_jobs) == 3 * len(params["data"]["images"])
    assert {argv[argv.index("--shard") + 1] for argv in shard_jobs} == {"0/3", "1/3", "2/3"}


def test_a_run_on_both_modalities_adds_its_mixed_store(tmp_path):
    """`data.both` makes one `msae mix` job per split; a run naming the mixed store trains on it and
    is evaluated on the images and on the captions like every run (the two tools agree)."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["both"] = ["train"]
    mixed = layout.both_store(params["data"]["name"], "train")
    params["runs"]["matryoshka_both"] = {**params["runs"]["matryoshka_text"], "embeddings": mixed}
    snakemake, dvc = both_dags(with_params(tmp_path, params))
    assert_same(snakemake, dvc)
    ((_, outputs),) = [(argv, outputs) for argv, _, outputs in snakemake if argv[3] == "mix"]
    assert outputs == {mixed}
    jobs = {argv[3]: inputs for argv, inputs, _ in snakemake if "results/sae/matryoshka_both" in " ".join(argv)}
    assert mixed in jobs["train"] and {"evaluate"} <= set(jobs)
    # only its training reads the mixed store: adding one reruns no other run's evaluation
    assert [argv[3] for argv, inputs, _ in snakemake if mixed in inputs] == ["train"]
    evaluations = [argv for argv, _, _ in snakemake if argv[3] == "evaluate" and "results/sae/matryoshka_both" in argv]
    assert sorted(argv[argv.index("--modality") + 1] for argv in evaluations) == ["image", "text"]


def _parse(command: str):
    argv = shlex.split(command)
    assert argv[0] == "msae", command
    return build_parser().parse_args(argv[1:])


@pytest.mark.parametrize("path", [ROOT / "params.yaml", *EXAMPLES], ids=lambda p: p.name)
def test_every_command_parses_with_the_msae_cli(tmp_path, path):
    root = with_params(tmp_path, yaml.safe_load(path.read_text()))
    for step in dvc_steps(root):
        args = _parse(step.command)
        assert args._command is not None, step.name


def test_every_rule_writes_a_log_and_torch_rules_ask_for_one_gpu():
    for step in snakemake_steps(ROOT):
        stage = step.argv[3]
        assert step.log and step.argv[:3] == ("msae", "--log", step.log), step.name
        gpus = 1 if "gpu=1" in step.resources else 0
        assert gpus == (1 if stage in TORCH_STAGES else 0), (step.name, gpus)


def test_local_profile_runs_one_gpu_job_at_a_time():
    profile = yaml.safe_load((ROOT / "workflow/profiles/local/config.yaml").read_text())
    assert "gpu=1" in profile["resources"]
    default = ROOT / "profiles" / "default"
    assert default.resolve() == (ROOT / "workflow/profiles/local").resolve()


def test_slurm_profile_names_real_rules_and_gpu_partitions():
    profile = yaml.safe_load((ROOT / "workflow/profiles/slurm/config.yaml").read_text())
    rules = {step.name.split("[")[0]: int("gpu=1" in step.resources) for step in snakemake_steps(ROOT)}
    assert set(profile["set-resources"]) <= set(rules) and set(profile["set-threads"]) <= set(rules)
    for rule, gpus in rules.items():
        if gpus:
            assert "gpu" in profile["set-resources"][rule]["slurm_partition"], rule


def test_snakemake_lint_is_clean():
    result = run_tool(["snakemake", "--lint"], cwd=ROOT)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "Congratulations" in output and "Lints for" not in output, output


def _bad_params(root: Path) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["runs"]["topk_k8"]["k"] = 5000
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_snakemake_refuses_bad_params_when_parsing(tmp_path):
    root = copy_project(tmp_path / "project")
    _bad_params(root)
    result = run_tool(["snakemake", "--cores", "1"], cwd=root)
    assert result.returncode != 0
    assert "runs.topk_k8.k: 5000 is more than" in result.stdout + result.stderr
    assert not (root / "results").exists()


def test_dvc_refuses_bad_params_before_any_stage(tmp_path):
    root = init_dvc_repo(copy_project(tmp_path / "project"))
    _bad_params(root)
    result = run_tool(["dvc", "repro"], cwd=root)
    assert result.returncode != 0
    assert "runs.topk_k8.k: 5000 is more than" in result.stdout + result.stderr
    assert not (root / "results").exists()


def test_sync_refuses_when_nothing_was_run(tmp_path):
    root = init_dvc_repo(copy_project(tmp_path / "project"))
    after_snakemake = run_tool(["msae", "sync", "--after", "snakemake", "--root", str(root)], cwd=root)
    assert after_snakemake.returncode == 2 and "Snakemake still has" in after_snakemake.stderr
    after_dvc = run_tool(["msae", "sync", "--after", "dvc", "--root", str(root)], cwd=root)
    assert after_dvc.returncode == 2 and "`dvc status` is not clean" in after_dvc.stderr
    assert subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True).stdout == ""
