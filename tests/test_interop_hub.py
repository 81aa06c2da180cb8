"""The Hub side: hf:// specs resolved through huggingface_hub's cache (offline here, with a cache
laid out as huggingface_hub lays it out and checked with its own scanner), `push` against a
mocked HfApi with the real method signatures, and the generated model card."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import numpy as np
import pytest
import torch
import yaml
from test_interop_formats import clip_like, make_run

from msae.errors import MsaeError
from msae.interop.card import model_card
from msae.interop.hub import HubPath, parse, push
from msae.interop.official import import_official

huggingface_hub = pytest.importorskip("huggingface_hub")
COMMIT = "0123456789abcdef0123456789abcdef01234567"
OFFICIAL_DATA = Path(__file__).parent / "data" / "official_msae"


def fake_cache(hf_home: Path, repo_id: str, files: Path, commit: str = COMMIT) -> Path:
    """Put the tree `files` into huggingface_hub's cache under HF_HOME as if downloaded at `commit`
    on main: blobs named by content, snapshot entries as relative symlinks, refs/main."""
    from huggingface_hub.file_download import repo_folder_name

    repo = hf_home / "hub" / repo_folder_name(repo_id=repo_id, repo_type="model")
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    for path in sorted(p for p in files.rglob("*") if p.is_file()):
        blob = hashlib.sha256(path.read_bytes()).hexdigest()
        shutil.copyfile(path, repo / "blobs" / blob)
        entry = repo / "snapshots" / commit / path.relative_to(files)
        entry.parent.mkdir(parents=True, exist_ok=True)
        entry.symlink_to(os.path.relpath(repo / "blobs" / blob, entry.parent))
    return repo


def resolve_offline(hf_home: Path, inputs: dict[str, np.ndarray], work: Path) -> dict:
    """Resolve each spec in a fresh interpreter with HF_HOME and HF_HUB_OFFLINE=1 set as a user
    would (huggingface_hub reads them at import), load it (an official .pth through
    import_official) and save its latents of the spec's inputs as work/<i>.npy."""
    script = """
import json, sys
import numpy as np, torch
from msae.errors import MsaeError
from msae.interop.hub import resolve_hf
from msae.interop.official import import_official
from msae.sae import load
work, specs, out = sys.argv[1], sys.argv[2:], {}
for i, spec in enumerate(specs):
    try:
        path = resolve_hf(spec)
        run = import_official(spec, f"{work}/{i}.run") if spec.endswith(".pth") else path
        x = torch.from_numpy(np.load(f"{work}/{i}.x.npy"))
        np.save(f"{work}/{i}.npy", load(run).encode(x).numpy())
        out[spec] = {"path": str(path)}
    except MsaeError as exc:
        out[spec] = {"error": str(exc)}
print(json.dumps(out))
"""
    work.mkdir()
    for i, x in enumerate(inputs.values()):
        np.save(work / f"{i}.x.npy", x)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(HF_HOME=str(hf_home), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-c", script, str(work), *inputs],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def autospec_hub(remote: Path) -> mock.MagicMock:
    """An HfApi mock with the real signatures; upload_folder copies into `remote`/<repo>/<path>."""
    api = mock.create_autospec(huggingface_hub.HfApi, instance=True)

    def upload_folder(*, repo_id, folder_path, path_in_repo=None, commit_message=None, **_):
        shutil.copytree(folder_path, remote / repo_id / (path_in_repo or ""), dirs_exist_ok=True)
        return SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/{COMMIT}")

    api.upload_folder.side_effect = upload_folder
    return api


def write_metrics(eval_dir: Path) -> dict:
    metrics = {
        "variant": "matryoshka",
        "d": 12,
        "n_latents": 48,
        "n_eval": 2000,
        "do": 0.0097,
        "zeroshot_retained": 1.0,
        "recall5_retained": 0.998,
        "dense": {
            "fvu": 0.0018092,
            "fvu_std": 0.00065714,
            "cs": 0.99911,
            "l0_zero_fraction": 0.63048,
            "active": 378.39,
            "ndn": 0,
        },
        "sparse": {
            "fvu": 0.029360,
            "fvu_std": 0.014254,
            "cs": 0.98542,
            "l0_zero_fraction": 0.99219,
            "active": 8.0,
            "ndn": 984,
        },
        "lp_kl": 2.1985e-05,
        "new_metric": 0.5,
    }
    eval_dir.mkdir(parents=True)
    (eval_dir / "metrics.json").write_text(json.dumps(metrics))
    (eval_dir / "progressive.csv").write_text("k,fvu\n16,0.1\n")
    return metrics


# --------------------------------------------------------------------- hf:// specs
@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("hf://me/sae", HubPath("me/sae", None, "")),
        ("hf://me/sae/matryoshka_rw", HubPath("me/sae", None, "matryoshka_rw")),
        ("hf://me/sae@v1.0/runs/topk/", HubPath("me/sae", "v1.0", "runs/topk")),
        (f"hf://me/sae@{COMMIT}", HubPath("me/sae", COMMIT, "")),
    ],
)
def test_parse_agrees_with_huggingface_hub(spec: str, expected: HubPath) -> None:
    assert parse(spec) == expected
    parse_hf_uri = getattr(importlib.import_module("huggingface_hub.utils"), "parse_hf_uri", None)
    if parse_hf_uri is not None:  # huggingface_hub >= 1.x has its own parser: an independent oracle
        theirs = parse_hf_uri(spec)
        theirs_parts = (theirs.id, theirs.revision, theirs.path_in_repo.strip("/"))
        assert theirs_parts == (expected.repo_id, expected.revision, expected.path)


@pytest.mark.parametrize("spec", ["me/sae", "hf://me", "hf://me/", "hf:///sae", "hf://me/sae/../x", "hf://me/sae@/x"])
def test_parse_refuses_malformed_specs(spec: str) -> None:
    with pytest.raises(MsaeError, match="hf://"):
        parse(spec)


def test_offline_cache_resolves_and_loads(tmp_path: Path) -> None:
    """load(resolve_hf("hf://me/sae/matryoshka_rw")) from a cache alone, network forbidden; an
    official checkpoint imports straight from an hf:// file spec."""
    files = tmp_path / "repo"
    make_run(files / "matryoshka_rw", "matryoshka")
    make_run(files / "topk", "topk", seed=1)
    official = OFFICIAL_DATA / "64_16_TopKReLU_4_False_False_0.0_synthetic_train_2048_16.pth"
    (files / "official").mkdir()
    shutil.copy(official, files / "official" / official.name)
    hf_home = tmp_path / "hf"
    fake_cache(hf_home, "me/sae", files)
    scanned = huggingface_hub.scan_cache_dir(hf_home / "hub")  # huggingface_hub's own reading of the layout
    (repo,) = scanned.repos
    assert repo.repo_id == "me/sae" and {r.commit_hash for r in repo.revisions} == {COMMIT}
    assert {f.file_name for r in repo.revisions for f in r.files} == {"config.json", "model.safetensors", official.name}
    x, x16 = clip_like(16, d=12).numpy(), clip_like(16, d=16).numpy()
    official_spec = f"hf://me/sae/official/{official.name}"
    specs = {
        "hf://me/sae/matryoshka_rw": x,
        f"hf://me/sae@{COMMIT}/topk": x,
        official_spec: x16,
        "hf://me/sae/nothing_here": x,
        "hf://me/other": x,
    }
    result = resolve_offline(hf_home, specs, tmp_path / "work")
    from msae.sae import load

    expected = [load(files / "matryoshka_rw"), load(files / "topk"), load(import_official(official, tmp_path / "l"))]
    for i, (spec, sae) in enumerate(zip(specs, expected)):
        assert COMMIT in result[spec]["path"], result[spec]
        want = sae.encode(torch.from_numpy(specs[spec])).numpy()
        np.testing.assert_array_equal(np.load(tmp_path / "work" / f"{i}.npy"), want)
    imported = json.loads((tmp_path / "work" / "2.run" / "config.json").read_text())
    assert imported["source"]["path"] == official_spec and imported["variant"] == "topk"
    assert "'nothing_here' is not in me/sae" in result["hf://me/sae/nothing_here"]["error"]
    missing = result["hf://me/other"]["error"]
    assert "hf://me/other: cannot get it" in missing and "offline" in missing.lower()


def test_online_download_fetches_only_the_requested_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Online, snapshot_download gets allow_patterns; huggingface_hub's own filter must select the
    whole run directory (nested files too) and nothing of the other runs."""
    from huggingface_hub.utils import filter_repo_objects

    from msae.interop.hub import resolve_hf

    listing = [
        "README.md",
        "matryoshka_rw/config.json",
        "matryoshka_rw/model.safetensors",
        "matryoshka_rw/eval/metrics.json",
        "matryoshka_rw_old/config.json",
        "topk/config.json",
    ]

    def snapshot_download(repo_id, revision=None, allow_patterns=None, cache_dir=None):
        root = tmp_path / "snapshot"
        for name in filter_repo_objects(listing, allow_patterns=allow_patterns):
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(name)
        return str(root)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    local = resolve_hf("hf://me/sae/matryoshka_rw")
    root = tmp_path / "snapshot"
    fetched = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert local == root / "matryoshka_rw"
    assert fetched == [
        "matryoshka_rw/config.json",
        "matryoshka_rw/eval/metrics.json",
        "matryoshka_rw/model.safetensors",
    ]


# --------------------------------------------------------------------- push
def test_push_uploads_run_metrics_and_card(tmp_path: Path) -> None:
    run = make_run(tmp_path / "matryoshka_rw", "matryoshka")
    metrics = write_metrics(tmp_path / "eval")
    remote = tmp_path / "remote"
    api = autospec_hub(remote)
    url = push(run, "me/sae/matryoshka_rw", tmp_path / "eval", api=api, private=True)
    assert url == f"https://huggingface.co/me/sae/commit/{COMMIT}"
    api.create_repo.assert_called_once_with("me/sae", private=True, exist_ok=True)
    assert api.upload_folder.call_args.kwargs["path_in_repo"] == "matryoshka_rw"
    pushed = remote / "me/sae/matryoshka_rw"
    assert sorted(p.relative_to(pushed).as_posix() for p in pushed.rglob("*") if p.is_file()) == [
        "README.md",
        "config.json",
        "eval/metrics.json",
        "eval/progressive.csv",
        "model.safetensors",
    ]
    for name in ("config.json", "model.safetensors"):
        assert (pushed / name).read_bytes() == (run / name).read_bytes()
    card = (pushed / "README.md").read_text()
    config = json.loads((run / "config.json").read_text())
    assert card == model_card(config, metrics, repo_id="me/sae", path="matryoshka_rw")
    assert 'load("hf://me/sae/matryoshka_rw")' in card


def test_pushed_sae_loads_back_through_the_cache(tmp_path: Path) -> None:
    run = make_run(tmp_path / "topk_k5", "topk")
    remote = tmp_path / "remote"
    push(run, "me/single", api=autospec_hub(remote))
    fake_cache(tmp_path / "hf", "me/single", remote / "me/single")
    x = clip_like(16).numpy()
    result = resolve_offline(tmp_path / "hf", {"hf://me/single": x}, tmp_path / "work")
    assert "error" not in result["hf://me/single"]
    from msae.sae import load

    np.testing.assert_array_equal(np.load(tmp_path / "work" / "0.npy"), load(run).encode(torch.from_numpy(x)).numpy())


def test_push_refuses_before_uploading(tmp_path: Path) -> None:
    api = autospec_hub(tmp_path / "remote")
    run = make_run(tmp_path / "run", "topk")
    with pytest.raises(MsaeError, match="metrics.json"):
        push(run, "me/sae", tmp_path / "no_eval", api=api)
    (run / "config.json").unlink()
    with pytest.raises(MsaeError, match="config.json"):
        push(run, "me/sae", api=api)
    with pytest.raises(MsaeError, match="main branch"):
        push(make_run(tmp_path / "other", "topk"), "me/sae@dev", api=api)
    assert not api.create_repo.called and not api.upload_folder.called


def test_push_reports_hub_errors(tmp_path: Path) -> None:
    api = autospec_hub(tmp_path / "remote")
    api.create_repo.side_effect = ConnectionError("Failed to resolve 'huggingface.co'")
    with pytest.raises(MsaeError, match="push to me/sae: the Hub refused"):
        push(make_run(tmp_path / "run", "topk"), "me/sae", api=api)


# --------------------------------------------------------------------- the model card
def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def table_row(card: str, label: str) -> list[str]:
    rows = [line for line in card.splitlines() if line.startswith(f"| {label} |")]
    assert len(rows) == 1, f"one row labelled {label!r}"
    return [cell.strip() for cell in rows[0].strip("|").split("|")][1:]


def test_card_holds_what_a_reader_needs(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", "matryoshka")
    config = json.loads((run / "config.json").read_text())
    metrics = write_metrics(tmp_path / "eval")
    card = model_card(config, metrics, repo_id="me/sae", path="matryoshka_rw")
    meta = front_matter(card)
    assert meta["library_name"] == "msae"
    assert {"msae", "sparse-autoencoder", "matryoshka-sae", "msae-world"} <= set(meta["tags"])
    assert "base_model" not in meta  # the built-in world CLIP is not a Hub model
    assert "# me/sae/matryoshka_rw" in card and "Matryoshka" in card and "RW weighting" in card
    assert table_row(card, "latents n") == ["48"] and table_row(card, "input width d") == ["12"]
    assert table_row(card, "nesting") == ["4, 8, 16, 48"]
    assert table_row(card, "dataset") == ["shapes"] and table_row(card, "sha256") == ["ab" * 32]
    assert table_row(card, "epochs") == ["3"]
    fvu = table_row(card, "FVU, fraction of variance unexplained (lower is better)")
    assert fvu == [
        f"{metrics['dense']['fvu']:.4g} ± {metrics['dense']['fvu_std']:.4g}",
        f"{metrics['sparse']['fvu']:.4g} ± {metrics['sparse']['fvu_std']:.4g}",
    ]
    assert table_row(card, "latents never active on the evaluation set") == ["0", "984"]
    # the two sparsity numbers under their own names (metrics.json: l0_zero_fraction, active)
    assert table_row(card, "L0, fraction of latents at zero (higher is sparser)") == ["0.6305", "0.9922"]
    assert table_row(card, "active latents per input") == ["378.4", "8"]
    assert table_row(card, "zero-shot accuracy retained") == ["1"]
    kl = table_row(card, "linear probe KL, original vs reconstruction (lower is better)")
    assert kl == [f"{metrics['lp_kl']:.4g}"]
    assert table_row(card, "new_metric") == ["0.5"]  # a key the card does not know keeps its name
    assert "| variant |" in card and "n_latents" not in card.split("## Evaluation")[1]


def test_card_without_metrics_and_with_a_hub_backbone() -> None:
    backbone = "hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K"
    config = {
        "variant": "topk",
        "d": 512,
        "n_latents": 4096,
        "k": 32,
        "data": {"model": "ViT-B-32", "pretrained": backbone, "modality": "image"},
        "source": {
            "format": "official-msae",
            "path": "/x/4096_512_TopKReLU_32_False_False_0.0_d.pth",
            "sha256": "cd" * 32,
        },
    }
    card = model_card(config)
    assert front_matter(card)["base_model"] == "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"
    assert "No evaluation was published" in card and "A TopK sparse autoencoder (k = 32)" in card
    assert "official-msae checkpoint (`4096_512_TopKReLU_32_False_False_0.0_d.pth`" in card
    given = model_card(config, base_model="openai/clip-vit-base-patch32")
    assert front_matter(given)["base_model"] == "openai/clip-vit-base-patch32"
