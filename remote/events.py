"""The run directory's files and the progress records both sides read.

Layout of `/workspace/runs/<run-id>/` (the same on a pod and for the local provider):
    recipe.yaml run.json train.log events.jsonl status.json pid exit_code watchdog.pid
    checkpoints/ adapter/ merged/ report.json push.json data/

`events.jsonl` is append-only, one JSON object a line, so the laptop can follow it by byte offset and a
dropped connection never loses or repeats a record. `status.json` is replaced atomically (write + rename).
Imports only the standard library: the orchestrator reads these files too.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EVENTS = "events.jsonl"
STATUS = "status.json"
TRAIN_LOG = "train.log"
PID = "pid"
EXIT_CODE = "exit_code"
RUN_INFO = "run.json"
REPORT = "report.json"
PUSH_RESULT = "push.json"

# Phases the pod runs by itself, in order; the laptop meters each from their start/end events.
POD_PHASES = ("setup", "download", "train", "merge", "push")


@dataclass(frozen=True)
class RunPaths:
    """Where each file of one run lives."""

    root: Path

    @property
    def events(self) -> Path:
        return self.root / EVENTS

    @property
    def status(self) -> Path:
        return self.root / STATUS

    @property
    def log(self) -> Path:
        return self.root / TRAIN_LOG

    @property
    def recipe(self) -> Path:
        return self.root / "recipe.yaml"

    @property
    def run_info(self) -> Path:
        return self.root / RUN_INFO

    @property
    def report(self) -> Path:
        return self.root / REPORT

    @property
    def push_result(self) -> Path:
        return self.root / PUSH_RESULT

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def adapter(self) -> Path:
        return self.root / "adapter"

    @property
    def merged(self) -> Path:
        return self.root / "merged"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def exit_code(self) -> Path:
        return self.root / EXIT_CODE


class EventLog:
    """Appends events to events.jsonl and mirrors the latest state into status.json."""

    def __init__(self, run_dir: str | Path):
        self.paths = RunPaths(Path(run_dir))
        self.paths.root.mkdir(parents=True, exist_ok=True)
        self._status: dict[str, Any] = read_status(self.paths.status) or {}

    def emit(self, kind: str, **fields: Any) -> dict[str, Any]:
        record = {"ts": round(time.time(), 3), "kind": kind, **fields}
        line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
        # One write of one line in append mode: readers never see half a record followed by another.
        with open(self.paths.events, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
        self._status.update({k: v for k, v in record.items() if k != "kind"})
        self._status["last_event"] = kind
        write_status(self.paths.status, self._status)
        return record

    def phase_start(self, phase: str, **fields: Any) -> None:
        self.emit("phase_start", phase=phase, **fields)

    def phase_end(self, phase: str, ok: bool = True, **fields: Any) -> None:
        self.emit("phase_end", phase=phase, ok=ok, **fields)


def write_json(path: Path, data: dict[str, Any], *, indent: int | None = None) -> None:
    """Write and rename: a reader (the laptop over SFTP, the watchdog) never sees a half-written file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, default=str, indent=indent), encoding="utf-8")
    os.replace(tmp, path)


def write_status(path: Path, status: dict[str, Any]) -> None:
    write_json(path, status)


def read_status(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def parse_event_lines(chunk: bytes) -> tuple[list[dict[str, Any]], int]:
    """Complete JSON lines in `chunk` and how many bytes they span; a trailing partial line waits for more."""
    end = chunk.rfind(b"\n") + 1
    events = []
    for raw in chunk[:end].splitlines():
        if raw.strip():
            try:
                events.append(json.loads(raw))
            except json.JSONDecodeError:
                events.append({"kind": "corrupt", "raw": raw.decode("utf-8", "replace")})
    return events, end


def read_events(path: Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Events after byte `offset`, and the offset to continue from."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            chunk = fh.read()
    except FileNotFoundError:
        return [], offset
    events, used = parse_event_lines(chunk)
    return events, offset + used
