"""Push a run's merged model (and adapter) to the Hub from the pod, then prove the Hub holds exactly those bytes.

    python -u -m remote push --run-dir /workspace/runs/<run-id> --token-file F

One commit (upload_folder) of a staging folder of hard links: merged weights, config, generation config and
tokenizer files, the adapter under `adapter/` if asked, and a model card. Calls the client sends only once are
retried here with backoff; a failed commit is re-sent only after the repo shows it did not land. Afterwards
every local file is checked against the Hub's tree (size and sha256 for LFS, git blob sha1 for the rest).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from . import card, hub_retry
from .events import EventKind, EventLog, RunPaths, write_json
from .recipe import Recipe
from .redact import Redactor

STAGING = "hub-upload"
# Weight files an earlier push may have left in the repo: a stale model.safetensors beside a new sharded index
# would be loaded instead of the new weights, so these are deleted in the same commit.
WEIGHT_PATTERNS = ("*.safetensors", "*.safetensors.index.json", "*.bin", "*.bin.index.json")
CHUNK = 8 * 1024 * 1024


class PushError(RuntimeError):
    """The push did not end with a verified commit; the message says what failed and how to retry."""


@dataclass(frozen=True)
class LocalFile:
    path: str  # path in the repo
    file: Path
    size: int
    sha256: str

    def git_sha1(self) -> str:
        h = hashlib.sha1(b"blob %d\0" % self.size)
        with open(self.file, "rb") as fh:
            while chunk := fh.read(CHUNK):
                h.update(chunk)
        return h.hexdigest()

    def pointer_sha1(self) -> str:
        """Git id of this file's LFS pointer: what the tree lists as `oid` for a file stored in LFS (or Xet)."""
        pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\nsize {self.size}\n".encode()
        return hashlib.sha1(b"blob %d\0" % len(pointer) + pointer).hexdigest()


def run(run_dir: Path, recipe: Recipe, log: EventLog, *, token: str) -> dict[str, Any]:
    """Push, verify, emit push_done and write push.json; raise PushError (token-free) when that cannot be done."""
    from huggingface_hub import HfApi

    run_dir = Path(run_dir)
    paths = RunPaths(run_dir)
    repo_id = recipe.output.hub_repo
    run_id = _run_id(paths)
    redact = Redactor([token])
    if not repo_id:
        raise PushError("the recipe has no output.hub_repo; set it, then run `podtune push " + run_id + "`")
    api = HfApi(token=token)
    retries: list[dict[str, Any]] = []

    def on_retry(what: str):
        def note(attempt: int, exc: BaseException, delay: float) -> None:
            error = redact(hub_retry.describe(exc))
            retries.append({"what": what, "attempt": attempt, "error": error})
            log.emit(EventKind.PUSH_RETRY, what=what, attempt=attempt, delay_s=round(delay, 2), error=error,
                     message=f"hub: {what} failed ({error}); retry {attempt}/{hub_retry.ATTEMPTS - 1} in {delay:.1f}s")
        return note

    started = time.time()
    step = "creating the repo"
    try:
        with hub_retry.request_timeouts():
            hub_retry.call(lambda: api.create_repo(repo_id, private=recipe.output.private, exist_ok=True),
                           on_retry=on_retry("create repo"))
            step = "checking write access"
            # create_repo(exist_ok=True) "succeeds" for a read token on an existing repo; this does not.
            hub_retry.call(lambda: api.auth_check(repo_id, write=True), on_retry=on_retry("auth check"))
            step = "checking the repo's visibility"
            # create_repo(private=True, exist_ok=True) leaves an existing public repo public.
            private = bool(hub_retry.call(lambda: api.repo_info(repo_id).private, on_retry=on_retry("repo info")))
            if not private and recipe.output.private:
                raise PushError(f"{repo_id} is public but output.private is true (the default): refusing to publish "
                                "the model. Make the repo private on the Hub (or set output.private: false), then "
                                f"run `podtune push {run_id}`")
            step = "preparing the files"
            staging = stage(paths, recipe, repo_id, redact, license_id=_base_license(api, recipe))
            local = digest(staging)
            step = "listing the repo"
            before = hub_retry.call(lambda: remote_files(api, repo_id), on_retry=on_retry("list files"))
            stale = sorted(p for p in before if p not in local and _replaceable(p, recipe))
            step = "uploading"
            commit = _upload(api, repo_id, staging, local, stale, run_id, recipe, on_retry)
            step = "verifying"
            remote = hub_retry.call(lambda: remote_files(api, repo_id, commit), on_retry=on_retry("verify"))
            problems = mismatches(local, remote, [p for p in remote if _replaceable(p, recipe)])
    except PushError:
        raise
    except Exception as exc:
        tries = f" after {hub_retry.ATTEMPTS} attempts" if hub_retry.is_transient(exc) else ""
        raise PushError(redact(f"push to {repo_id} failed while {step}{tries}: {hub_retry.describe(exc)}. "
                               f"{_hint(exc, run_id)}")) from exc
    if problems:
        raise PushError(redact(f"push to {repo_id} is not verified, the Hub's files differ from the run's: "
                               f"{'; '.join(problems[:20])}. Retry with `podtune push {run_id}`"))
    shutil.rmtree(staging, ignore_errors=True)
    result = {
        "url": f"{api.endpoint}/{repo_id}", "commit": commit, "repo_id": repo_id, "private": private,
        "files": len(local), "bytes": sum(f.size for f in local.values()), "verified": True,
        "deleted": stale, "retries": len(retries), "seconds": round(time.time() - started, 3),
    }
    log.emit(EventKind.PUSH_DONE, **result)
    write_json(paths.push_result, {**result, "retry_log": retries}, indent=1)
    return result


def stage(paths: RunPaths, recipe: Recipe, repo_id: str, redact: Redactor, *, license_id: str | None) -> Path:
    """A fresh folder of hard links to what is pushed, plus README.md; nothing is copied on one filesystem."""
    staging = paths.root / STAGING
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    sources: list[tuple[Path, str]] = []
    if recipe.output.push_merged:
        sources.append((paths.merged, ""))
    if recipe.output.push_adapter:
        sources.append((paths.adapter, "adapter/"))
    for source, prefix in sources:
        if not source.is_dir() or not any(source.iterdir()):
            raise PushError(f"nothing to push at {source}: the {'merge' if not prefix else 'train'} phase did not "
                            "finish on this volume; run the whole recipe again")
        for file in sorted(p for p in source.rglob("*") if p.is_file() and not p.name.startswith(".")):
            rel = prefix + file.relative_to(source).as_posix()
            if rel == "README.md":
                continue  # the model card below replaces any README the savers wrote
            target = staging / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(file, target)
            except OSError:  # another filesystem, or one without hard links
                shutil.copy2(file, target)
    text = card.render(recipe, card.run_facts(paths.root), repo_id=repo_id, license_id=license_id)
    (staging / "README.md").write_text(redact(text), encoding="utf-8")
    return staging


def digest(folder: Path) -> dict[str, LocalFile]:
    out = {}
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        h = hashlib.sha256()
        with open(file, "rb") as fh:
            while chunk := fh.read(CHUNK):
                h.update(chunk)
        rel = file.relative_to(folder).as_posix()
        out[rel] = LocalFile(rel, file, file.stat().st_size, h.hexdigest())
    return out


def remote_files(api, repo_id: str, revision: str | None = None) -> dict[str, Any]:
    """path -> RepoFile of every file in the repo at `revision` (default: the current head)."""
    entries = api.list_repo_tree(repo_id, recursive=True, revision=revision)
    return {e.path: e for e in entries if hasattr(e, "blob_id")}


def mismatches(local: dict[str, LocalFile], remote: dict[str, Any], must_not_exist: tuple[str, ...] | list[str] = ()) -> list[str]:
    problems = []
    for path, f in local.items():
        r = remote.get(path)
        if r is None:
            problems.append(f"{path}: missing on the Hub")
        elif r.size != f.size:
            problems.append(f"{path}: {r.size} bytes on the Hub, {f.size} here")
        elif r.lfs is not None and r.lfs.sha256 != f.sha256:
            problems.append(f"{path}: sha256 {r.lfs.sha256[:12]} on the Hub, {f.sha256[:12]} here")
        elif r.lfs is None and r.blob_id not in (f.git_sha1(), f.pointer_sha1()):
            problems.append(f"{path}: git blob {r.blob_id[:12]} on the Hub differs from the local file")
    problems += [f"{path}: stale file left on the Hub" for path in must_not_exist if path not in local]
    return problems


def _upload(api, repo_id: str, staging: Path, local: dict[str, LocalFile], stale: list[str], run_id: str,
            recipe: Recipe, on_retry) -> str:
    """One commit; returns its id. Before any re-send, looks whether the last try landed after all."""

    def send() -> str:
        info = api.upload_folder(
            repo_id=repo_id, folder_path=str(staging), delete_patterns=stale or None,
            commit_message=f"podtune: {recipe.name} ({run_id})",
            commit_description=f"Merged model of podtune run {run_id}, base {recipe.model.base}.",
        )
        return info.oid

    def landed() -> str | None:
        # A commit whose answer was lost (dropped connection, 5xx after the write) may be in the repo already.
        try:
            head = api.repo_info(repo_id).sha
            if head and not mismatches(local, remote_files(api, repo_id, head), stale):
                return head
        except Exception:  # the Hub is still failing: the next send() finds out and is retried or raises
            return None
        return None

    return hub_retry.call(send, on_retry=on_retry("upload"), already_done=landed)


def _replaceable(path: str, recipe: Recipe) -> bool:
    if recipe.output.push_adapter and path.startswith("adapter/"):
        return True
    return recipe.output.push_merged and "/" not in path and any(fnmatchcase(path, p) for p in WEIGHT_PATTERNS)


def _base_license(api, recipe: Recipe) -> str | None:
    """The base model's licence id for the card, when the Hub knows it; the card is fine without."""
    if recipe.model.is_builtin:
        return None
    try:
        info = hub_retry.call(lambda: api.model_info(recipe.model.base), attempts=2)
        data = getattr(info, "card_data", None) or getattr(info, "cardData", None)
        value = data.get("license") if data is not None else None
        return value if isinstance(value, str) else None
    except Exception:
        return None


def _hint(exc: BaseException, run_id: str) -> str:
    status = next((s for s in map(hub_retry.status_of, hub_retry.causes(exc)) if s is not None), None)
    retry = f"`podtune push {run_id}`"
    if status == 401:
        return f"The Hub token is invalid or revoked: set a new write token (HF_TOKEN), then run {retry}"
    if status == 403:
        return ("The token cannot write there: create a write token at https://huggingface.co/settings/tokens, "
                f"then run {retry}")
    return f"The merged model is safe on the pod's volume; retry with {retry}"


def _run_id(paths: RunPaths) -> str:
    try:
        return str(json.loads(paths.run_info.read_text())["run_id"])
    except (FileNotFoundError, KeyError, json.JSONDecodeError):
        return paths.root.name
