"""Scale-out: the SLURM profile, the conda environment, the container recipes, and (slow) the
scripts that run the tiny pipeline on a real one-node SLURM cluster and through a DVC remote."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def load(path: str):
    """A script of the repository as a module (scripts/ is no package)."""
    name = f"scaleout_{Path(path).stem}"
    spec = importlib.util.spec_from_file_location(name, ROOT / path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


jobs = load("scripts/slurm/jobs.py")
tiny = load("scripts/tiny_project.py")

# Jobs of a real run on the local cluster (sacct -P -n --format=<jobs.FIELDS>); 35 and 36 edited
# to cover days, a G unit, no MaxRSS and a failure.
SACCT = """\
27|run-1|cpu|msae|billing=1,cpu=1,mem=1000M,node=1|1|1000M|00:10:00|COMPLETED|0:0|00:00:13|00:03.587||rule_vocab
27.batch|batch||msae|cpu=1,mem=1000M,node=1|1|||COMPLETED|0:0|00:00:13|00:01.709|179996K|
27.0|python||msae|cpu=1,mem=1000M,node=1|1|||COMPLETED|0:0|00:00:07|00:01.878|182788K|
28|run-1|gpu|msae|billing=2,cpu=2,gres/gpu=1,mem=4000M,node=1|2|4000M|00:30:00|COMPLETED|0:0|00:00:27|00:09.828||rule_embed_prompts_wildcards_shape
28.batch|batch||msae|cpu=2,gres/gpu=1,mem=4000M,node=1|2|||COMPLETED|0:0|00:00:27|00:01.600|179768K|
28.0|python||msae|cpu=2,gres/gpu=1,mem=4000M,node=1|2|||COMPLETED|0:0|00:00:21|00:08.227|1126572K|
35|run-1|gpu|msae|billing=2,cpu=2,gres/gpu=1,mem=4000M,node=1|2|4000M|00:30:00|COMPLETED|0:0|1-00:01:02|01:02:03||rule_train_wildcards_topk
35.batch|batch||msae|cpu=2,gres/gpu=1,mem=4000M,node=1|2|||COMPLETED|0:0|00:00:23|00:01.000|0.5G|
36|run-1|cpu|msae|billing=1,cpu=1,mem=1000M,node=1|1|1000M|00:10:00|FAILED|1:0|05:09|00:00:00||rule_gather_images_wildcards_bias_control
"""


def test_sacct_lines_become_jobs_with_summed_step_memory():
    parsed = {job.job_id: job for job in jobs.parse_sacct(SACCT)}
    assert sorted(parsed) == ["27", "28", "35", "36"]
    vocab, prompts, train, gather = parsed["27"], parsed["28"], parsed["35"], parsed["36"]
    assert (vocab.rule, vocab.wildcards, vocab.gpus, vocab.cpus) == ("vocab", "", 0, 1)
    assert (prompts.rule, prompts.wildcards, prompts.gpus) == ("embed_prompts", "shape", 1)
    assert (train.rule, train.wildcards) == ("train", "topk")
    # batch + srun step, by hand: (179996 + 182788) KiB and (179768 + 1126572) KiB in MiB
    assert vocab.max_rss_mb == pytest.approx(round((179996 + 182788) / 1024, 1))
    assert prompts.max_rss_mb == pytest.approx(round((179768 + 1126572) / 1024, 1))
    assert train.max_rss_mb == 512.0 and gather.max_rss_mb == 0.0
    assert (vocab.elapsed_s, train.elapsed_s, gather.elapsed_s) == (13, 86400 + 62, 309)
    assert (vocab.cpu_s, prompts.cpu_s, train.cpu_s) == (3.6, 9.8, 3723.0)
    rows = {line.split()[0]: line.split() for line in jobs.table(list(parsed.values())).splitlines()[2:]}
    assert rows["embed_prompts"][-1] == f"{9.8 / (27 * 2):.0%}" and rows["embed_prompts"][6] == "1276"


def test_problems_name_missing_failed_and_wrongly_placed_jobs():
    parsed = jobs.parse_sacct(SACCT)
    expected = jobs.Counter({"vocab": 1, "embed_prompts": 1, "train": 1, "gather_images": 1})
    gpu = {"embed_prompts", "train"}
    found = jobs.problems(parsed, expected, gpu)
    assert found == ["job 36 (gather_images bias_control): FAILED exit 1:0"]
    found = jobs.problems(parsed, expected + jobs.Counter({"report": 1}), gpu - {"train"} | {"vocab"})
    assert "rule report: 1 job(s) scheduled, 0 in sacct" in found
    assert "job 27 (vocab): holds 0 GPU(s) but its rule declares gpu=1" in found
    assert "job 35 (train topk): holds 1 GPU(s) but its rule declares none" in found


def test_run_facts_read_the_run_id_and_the_job_counts():
    log = (
        "SLURM run ID: 40911ab2-cb04\nJob stats:\njob                 count\n----------------  -------\n"
        "embed_images            4\ntrain                   2\nall                     1\ntotal                   7\n"
    )
    name, counts = jobs.run_facts(log)
    assert name == "40911ab2-cb04" and counts == {"embed_images": 4, "train": 2}
    with pytest.raises(SystemExit, match="SLURM run ID"):
        jobs.run_facts(log.replace("SLURM run ID", "run"))


def test_slurm_profile_asks_slurm_for_a_gpu_for_every_gpu_rule():
    """Snakemake's own `gpu` resource is the one-machine pool's token (profiles/default caps it at 1
    and wins over --profile): the cluster profile must zero it and ask SLURM through gres."""
    profile = yaml.safe_load((ROOT / "workflow/profiles/slurm/config.yaml").read_text())
    declared = jobs.gpu_rules(ROOT)
    assert declared, "no rule declares gpu=1"
    for rule in declared:
        settings = profile["set-resources"][rule]
        assert settings["gpu"] == 0 and re.fullmatch(r"gpu(:\w+)?:1", settings["gres"]), rule
        assert "gpu" in settings["slurm_partition"], rule
    for rule, settings in profile["set-resources"].items():
        if rule not in declared:
            assert "gres" not in settings and "gpu" not in settings, rule
    defaults = profile["default-resources"]
    assert defaults["cpus_per_task"] == "threads" and defaults["mem_mb"] > 0 and defaults["runtime"] > 0


def test_conda_env_installs_the_pinned_wheel_and_the_declared_dependencies():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "workflow/envs/msae.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert not any(line.startswith(("-e", "--editable")) for line in pip)
    assert pip[0] == f"../../dist/msae-{project['version']}-py3-none-any.whl"

    def name(requirement: str) -> str:
        return re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0].lower().replace("_", "-")

    pins = {name(line): line.split("==")[1] for line in pip[1:]}
    assert all("==" in line for line in pip[1:])
    assert set(pins) == {name(r) for r in project["dependencies"]}


def test_container_recipes_build_the_conda_env_around_the_same_wheel():
    env = yaml.safe_load((ROOT / "workflow/envs/msae.yaml").read_text())
    wheel = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))[0].removeprefix("../../")
    for recipe in ("containers/Dockerfile", "containers/msae.def"):
        text = (ROOT / recipe).read_text()
        # The env file and the wheel keep their relative layout, so ../../dist resolves inside.
        assert re.search(r"workflow/envs/msae.yaml\s+/opt/msae/workflow/envs/msae.yaml", text), recipe
        assert re.search(rf"{re.escape(wheel)}\s+/opt/msae/{re.escape(wheel)}", text), recipe
        assert "--file /opt/msae/workflow/envs/msae.yaml" in text, recipe
    if shutil.which("hadolint"):
        result = subprocess.run(["hadolint", str(ROOT / "containers/Dockerfile")], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout


def test_compare_finds_changed_missing_and_extra_results(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for root in (a, b):
        (root / "results/eval/r").mkdir(parents=True)
        (root / "results/eval/r/metrics.json").write_text('{"fvu": 0.1}')
        (root / "results/logs").mkdir()
    (a / "results/logs/train.log").write_text("took 3 s")  # logs are not results
    (b / "results/eval/r/.snakemake_timestamp").write_text("")
    assert tiny.compare(a, b) == []
    (b / "results/eval/r/metrics.json").write_text('{"fvu": 0.2}')
    (b / "results/eval/r/extra.csv").write_text("x")
    assert tiny.compare(a, b) == [f"only in {b}: results/eval/r/extra.csv", "differs: results/eval/r/metrics.json"]
    assert tiny.compare(tmp_path / "none", b) == [f"{tmp_path / 'none'}: no results"]


def _script(args: list[str], timeout: int) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHON=sys.executable)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def _cluster_up() -> bool:
    if shutil.which("scontrol") is None:
        return False
    return subprocess.run(["scontrol", "ping"], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def slurm_cluster():
    """The one-node cluster of scripts/slurm/setup.sh (root only); torn down if this test started it."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("setting up SLURM needs root and apt-get")
    pytest.importorskip("snakemake_executor_plugin_slurm")
    was_up = _cluster_up()
    setup = _script(["bash", "scripts/slurm/setup.sh"], timeout=900)
    assert setup.returncode == 0, setup.stdout[-2000:] + setup.stderr[-2000:]
    yield
    if not was_up:
        subprocess.run(["bash", str(ROOT / "scripts/slurm/teardown.sh")], check=True)


@pytest.mark.slow
def test_tiny_pipeline_on_a_real_slurm_cluster_matches_a_local_run(slurm_cluster, tmp_path):
    result = _script(["bash", "scripts/slurm/run.sh", str(tmp_path / "run")], timeout=3600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "FAIL" not in output and "identical results" in output, output[-4000:]
    assert re.search(r"train\s+2 gpu\s+\d+\s+1 ", output), output  # GPU rules held their GPU


@pytest.mark.slow
def test_results_shared_through_a_dvc_remote_need_no_recompute(tmp_path):
    result = _script(["bash", "scripts/dvc-remote.sh", str(tmp_path / "remote")], timeout=3600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "FAIL" not in result.stdout
