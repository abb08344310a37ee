"""Everything the pod does for one run, in order, without the laptop: download, train, merge, push.

    python -u -m remote pipeline --run-dir /workspace/runs/<run-id> [--token-file F] [--phases train,merge,push]
                                 [--wandb-key-file F]

Started detached (nohup setsid) by the laptop. Each phase leaves a `.done-<phase>` marker holding its summary,
so a re-launch (a resumed pod, `podtune push RUN`) skips what is already on the volume.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from .datacheck import DataError
from .events import PIPELINE_PHASES, EventKind, EventLog, Phase, RunPaths, write_json
from .recipe import load_recipe
from .redact import Redactor, RedactingStream, point_log_handlers

PHASES: tuple[str, ...] = PIPELINE_PHASES


def _marker(run_dir: Path, phase: str) -> Path:
    return run_dir / f".done-{phase}"


def _done(run_dir: Path, phase: str) -> dict[str, Any] | None:
    try:
        return json.loads(_marker(run_dir, phase).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _read_token(token_file: str | None) -> str | None:
    if not token_file:
        return None
    try:
        return Path(token_file).read_text().strip() or None
    except FileNotFoundError:
        return None


def _forget_token(token_file: str | None) -> None:
    """The token file must not outlive its last use on a volume that stays around after the pod stops."""
    if token_file:
        try:
            os.unlink(token_file)
        except FileNotFoundError:
            pass


def run(run_dir: Path, token_file: str | None, phases: tuple[str, ...] = PHASES, *,
        wandb_key_file: str | None = None) -> int:
    # Read at once and the file removed: the key then lives only in this process's memory (and the tracker's).
    # Several GPUs: rank 0 of torchrun reads it too, so it stays until the train phase ends.
    wandb_key = _read_token(wandb_key_file)
    ranks_file = wandb_key_file if wandb_key_file and _ranks_train(run_dir) else None
    if ranks_file is None:
        _forget_token(wandb_key_file)
    try:
        return _run(run_dir, token_file, phases, wandb_key, ranks_file)
    finally:
        _forget_token(token_file)  # the pipeline is the token's only reader: every way out removes it
        _forget_token(wandb_key_file)


def _ranks_train(run_dir: Path) -> bool:
    try:
        return load_recipe(RunPaths(run_dir).recipe).compute.gpu_count > 1
    except Exception:  # noqa: BLE001 - an unreadable recipe fails in _run, where it is reported
        return False


def _run(run_dir: Path, token_file: str | None, phases: tuple[str, ...], wandb_key: str | None = None,
         wandb_key_file: str | None = None) -> int:
    paths = RunPaths(run_dir)
    recipe = load_recipe(paths.recipe)
    token = _read_token(token_file)
    redactor = Redactor([token, wandb_key])
    for name in ("stdout", "stderr"):
        bare = getattr(sys, name)
        setattr(sys, name, RedactingStream(bare, redactor))
        point_log_handlers(bare, getattr(sys, name))
    log = EventLog(run_dir)
    from .hardware import describe

    log.emit(EventKind.PIPELINE_START, pid=os.getpid(), phases=list(phases), hardware=describe())
    results: dict[str, Any] = {}
    model_dir: Path | None = None
    current: str = Phase.DOWNLOAD
    try:
        for current in phases:
            previous = _done(run_dir, current)
            if previous is not None and current != Phase.DOWNLOAD:
                log.emit(EventKind.PHASE_SKIPPED, phase=current, reason="already done on the volume")
                results[current] = previous
                continue
            if current == Phase.PUSH and not recipe.output.hub_repo:
                log.emit(EventKind.PHASE_SKIPPED, phase=Phase.PUSH, reason="recipe has no output.hub_repo")
                continue
            if current == Phase.PUSH and token is None:
                raise RuntimeError("no Hub token was delivered to the pod; run `podtune push RUN` with HF_TOKEN set")
            log.phase_start(current)
            started = time.time()
            if current == Phase.DOWNLOAD:
                from .download import ensure_base_model

                model_dir = ensure_base_model(recipe, token)
                summary: dict[str, Any] = {"model_dir": str(model_dir)}
            else:
                if model_dir is None:
                    from .download import ensure_base_model

                    model_dir = ensure_base_model(recipe, token)
                summary = _run_phase(current, run_dir, recipe, log, model_dir, token, token_file, wandb_key,
                                     wandb_key_file)
                if current == Phase.TRAIN:
                    _forget_token(wandb_key_file)  # the ranks have read it
            summary["seconds"] = round(time.time() - started, 3)
            results[current] = summary
            if summary.get("interrupted"):
                log.phase_end(current, ok=False, reason="interrupted")
                log.emit(EventKind.PIPELINE_DONE, ok=False, interrupted=True)
                return 143
            _marker(run_dir, current).write_text(json.dumps(summary, default=str))
            if current == Phase.PUSH:
                _forget_token(token_file)  # right after the push: nothing later needs it
            log.phase_end(current, ok=True)
    except Exception as exc:  # every failure becomes an event the laptop can show, then a non-zero exit
        message = redactor(f"{exc.__class__.__name__}: {exc}")
        # Bad data is the recipe's fault, not a bug: the message is the whole story, a traceback only hides it.
        print(message if isinstance(exc, DataError) else redactor(traceback.format_exc()), file=sys.stderr, flush=True)
        log.phase_end(current, ok=False, error=message)
        log.emit(EventKind.PIPELINE_DONE, ok=False, error=message, phase=current)
        return 1
    _write_report(paths, results)
    log.emit(EventKind.PIPELINE_DONE, ok=True)
    return 0


def _run_phase(phase: str, run_dir: Path, recipe, log: EventLog, model_dir: Path, token: str | None,
               token_file: str | None, wandb_key: str | None = None, wandb_key_file: str | None = None) -> dict:
    if phase == Phase.TRAIN and recipe.compute.gpu_count > 1:
        return _train_distributed(run_dir, recipe, model_dir, token_file, wandb_key_file)
    if phase == Phase.TRAIN:
        from . import train

        return train.run(run_dir, recipe, log, model_dir=model_dir, token=token, wandb_key=wandb_key)
    if phase == Phase.MERGE:
        from . import merge

        return merge.run(run_dir, recipe, log, model_dir=model_dir, token=token)
    if phase == Phase.PUSH:
        from . import push

        if not token:
            raise RuntimeError("the push phase needs the Hub token file (--token-file); podtune passes it when "
                               "output.hub_repo is set")
        return push.run(run_dir, recipe, log, token=token)
    raise ValueError(f"unknown phase {phase!r}; known: {', '.join(PHASES)}")


def _train_distributed(run_dir: Path, recipe, model_dir: Path, token_file: str | None,
                       wandb_key_file: str | None = None) -> dict:
    """One rank per GPU under torchrun; rank 0 writes the events. Merge and push stay in this single process."""
    from .distributed import train

    return train(run_dir, recipe.compute.gpu_count, model_dir, token_file, wandb_key_file=wandb_key_file)


def _write_report(paths: RunPaths, results: dict[str, Any]) -> None:
    write_json(paths.report, {"phases": results}, indent=1)
