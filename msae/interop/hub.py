"""SAEs on the Hugging Face Hub: `hf://owner/repo[@revision][/path]` resolved to a local path
through huggingface_hub's own cache, and `push` of a run directory with a generated model card.

Resolution goes through `snapshot_download`, so it honours everything huggingface_hub does: the
cache location (HF_HOME / HF_HUB_CACHE), offline mode (HF_HUB_OFFLINE=1 reads the cache only and
never touches the network) and tokens for private repositories. Only the files under `path` are
fetched.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from msae.errors import MsaeError
from msae.io import read_json_object

PREFIX = "hf://"
RUN_FILES = ("model.safetensors", "config.json", "train_log.csv")  # what a run directory publishes
EVAL_FILES = ("metrics.json", "progressive.csv")
EVAL_DIR = "eval"  # where push puts the evaluation files inside the repository


@dataclass(frozen=True)
class HubPath:
    """A location on the Hub: repository, optional revision, path inside the repository."""

    repo_id: str
    revision: str | None
    path: str  # "" for the repository root


def parse(spec: str) -> HubPath:
    """Split `hf://owner/repo[@revision][/path]`; a MsaeError says what a valid spec looks like."""
    if not spec.startswith(PREFIX):
        raise MsaeError(f"{spec!r}: a Hub location starts with {PREFIX} (e.g. {PREFIX}owner/repo/subdir)")
    parts = spec[len(PREFIX) :].strip("/").split("/")
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise MsaeError(f"{spec!r}: expected {PREFIX}owner/repo[@revision][/path]")
    name, _, revision = parts[1].partition("@")
    if not name or (parts[1].endswith("@") and not revision):
        raise MsaeError(f"{spec!r}: expected {PREFIX}owner/repo[@revision][/path]")
    if any(p in ("", ".", "..") for p in parts[2:]):
        raise MsaeError(f"{spec!r}: the path inside the repository must not contain empty, '.' or '..' parts")
    return HubPath(repo_id=f"{parts[0]}/{name}", revision=revision or None, path="/".join(parts[2:]))


def resolve_hf(spec: str) -> Path:
    """The local path (directory or file) of `hf://owner/repo[@revision][/path]`, downloaded into
    (or, offline, read from) huggingface_hub's cache. `msae.sae.load` calls it for hf:// specs."""
    from huggingface_hub import snapshot_download

    where = parse(spec)
    patterns = [where.path, f"{where.path}/*"] if where.path else None
    try:
        root = snapshot_download(where.repo_id, revision=where.revision, allow_patterns=patterns)
    except Exception as exc:
        raise MsaeError(
            f"{spec}: cannot get it from the Hugging Face Hub or its local cache ({type(exc).__name__}: {exc})"
        ) from exc
    local = Path(root) / where.path
    if not local.exists():
        raise MsaeError(
            f"{spec}: {where.path!r} is not in {where.repo_id}"
            f"{'@' + where.revision if where.revision else ''} (nor in the local cache when offline)"
        )
    return local


def resolve(spec: str | os.PathLike[str]) -> Path:
    """A local path for either a filesystem path or an hf:// spec (the importers accept both)."""
    text = os.fspath(spec)
    return resolve_hf(text) if text.startswith(PREFIX) else Path(text).expanduser()


def push(
    sae_dir: str | os.PathLike[str],
    repo: str,
    eval_dir: str | os.PathLike[str] | None = None,
    *,
    api: Any = None,
    private: bool | None = None,
    base_model: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Upload a run directory (model.safetensors, config.json, train_log.csv) and, with `eval_dir`,
    its metrics under eval/, plus a README.md model card generated from config.json and
    metrics.json. `repo` is owner/name or owner/name/subdir (several SAEs in one repository; the
    card then lies in the subdirectory). Returns the commit URL. `api` defaults to
    huggingface_hub.HfApi() (its token from HF_TOKEN or `hf auth login`)."""
    from msae.interop import read_run
    from msae.interop.card import model_card

    where = parse(PREFIX + repo)
    if where.revision:
        raise MsaeError(f"--repo {repo}: push always commits to the main branch; drop @{where.revision}")
    _, config = read_run(sae_dir)  # refuses an unfinished or broken run before anything is uploaded
    metrics = _read_metrics(eval_dir) if eval_dir is not None else None
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    card = model_card(config, metrics, repo_id=where.repo_id, path=where.path, base_model=base_model)
    with tempfile.TemporaryDirectory(prefix="msae-push-") as tmp:
        staged = Path(tmp)
        for name in RUN_FILES:
            if (Path(sae_dir) / name).is_file():
                shutil.copy2(Path(sae_dir) / name, staged / name)
        if eval_dir is not None:
            (staged / EVAL_DIR).mkdir()
            for name in EVAL_FILES:
                if (Path(eval_dir) / name).is_file():
                    shutil.copy2(Path(eval_dir) / name, staged / EVAL_DIR / name)
        (staged / "README.md").write_text(card, encoding="utf-8")
        try:
            api.create_repo(where.repo_id, private=private, exist_ok=True)
            commit = api.upload_folder(
                repo_id=where.repo_id,
                folder_path=str(staged),
                path_in_repo=where.path or None,
                commit_message=commit_message or f"Upload msae SAE {Path(sae_dir).name}",
            )
        except Exception as exc:
            raise MsaeError(
                f"push to {repo}: the Hub refused or could not be reached ({type(exc).__name__}: {exc})"
            ) from exc
    return str(getattr(commit, "commit_url", commit))


def _read_metrics(eval_dir: str | os.PathLike[str]) -> dict[str, Any]:
    return read_json_object(Path(eval_dir) / "metrics.json", f"--eval {eval_dir}: run msae evaluate first")
