"""The protocol between the laptop and the pod: the workspace's and the run folder's layout, the phases, the event
kinds, run.json.

Layout of the workspace (`/workspace` on a pod, the volume; a folder under PODTUNE_HOME for the local provider):
    podtune/ (the synced code, constraints.txt)  hf/ (HF_HOME)  venvs/  .podtune-secrets/  runs/<run-id>/

Layout of `/workspace/runs/<run-id>/`:
    recipe.yaml run.json train.log events.jsonl status.json pid exit_code watchdog.pid watchdog.log watchdog.json
    laptop_heartbeat checkpoints/ adapter/ merged/ report.json push.json data/ tensorboard/ .rank-logs/ .warm/

`events.jsonl` is append-only, one JSON object a line, so the laptop can follow it by byte offset and a
dropped connection never loses or repeats a record. `status.json` is replaced atomically (write + rename).
Imports only the standard library: the orchestrator reads these files too, and the watchdog must run without
the training environment. Everything either side names about a run folder is named here, once.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, fields
from enum import Enum
from pathlib import Path, PurePath, PurePosixPath
from typing import Any, Generic, TypeVar

# The run folder's files, as both sides name them.
RECIPE = "recipe.yaml"
RUN_INFO = "run.json"
EVENTS = "events.jsonl"
STATUS = "status.json"
TRAIN_LOG = "train.log"
PID = "pid"
EXIT_CODE = "exit_code"
WATCHDOG_PID = "watchdog.pid"
WATCHDOG_LOG = "watchdog.log"
WATCHDOG_STATUS = "watchdog.json"
HEARTBEAT = "laptop_heartbeat"  # the laptop touches it while it follows; the watchdog leaves the stop to it
REPORT = "report.json"
PUSH_RESULT = "push.json"
CHECKPOINTS = "checkpoints"
ADAPTER = "adapter"
MERGED = "merged"
DATA = "data"
TENSORBOARD = "tensorboard"  # TensorBoard's event files; the laptop keeps a copy
RANK_LOGS = ".rank-logs"  # torchrun's per-rank copies of the output, deleted after the train phase
WARM = ".warm"  # the pod's Python started ahead of the launch (remote/warm.py): its script, output, pid, hand-over
WARM_SCRIPT, WARM_LOG, WARM_PID = "boot.py", "boot.log", "pid"
WARM_ARGS, WARM_CLAIM, WARM_WENT = "args.json", "claim", "went"
RUN_FILE_NAMES = (RECIPE, RUN_INFO, EVENTS, STATUS, TRAIN_LOG, PID, EXIT_CODE, WATCHDOG_PID, WATCHDOG_LOG,
                  WATCHDOG_STATUS, HEARTBEAT, REPORT, PUSH_RESULT)

# The workspace's folders, as both sides name them.
CODE = "podtune"  # the code the laptop syncs; the pod runs `python -m remote` from here
CONSTRAINTS = "constraints.txt"  # in CODE: the pod's pip installs only the versions the project is tested with
HF_HOME_DIR = "hf"  # the pod's HF_HOME: models and datasets stay on the volume across a stop
VENVS = "venvs"
SECRETS = ".podtune-secrets"  # where a secret lives when the pod has no RAM folder for it
LEGACY_TOKEN = "hf_token"  # in SECRETS: where podtune kept the token before per-run secret files
RUNS = "runs"


class _StrEnum(str, Enum):
    """A str whose value is what JSON, the state DB and f-strings see (`f"{Phase.TRAIN}"` is "train")."""

    def __str__(self) -> str:
        return str(self.value)


class Phase(_StrEnum):
    """Every phase of a run, in the order a run goes through them (reports and costs sort by it)."""

    PLAN = "plan"
    PROVISION = "provision"
    CONNECT = "connect"
    SYNC = "sync"
    SETUP = "setup"
    DOWNLOAD = "download"
    TRAIN = "train"
    MERGE = "merge"
    PUSH = "push"
    IDLE = "idle"  # billed time no phase covers (costs.py); never an event
    STOP = "stop"


# The phases the pod's pipeline runs by itself, in order; the laptop meters each from their start/end events.
PIPELINE_PHASES = (Phase.DOWNLOAD, Phase.TRAIN, Phase.MERGE, Phase.PUSH)


class EventKind(_StrEnum):
    """The `kind` of each record in events.jsonl."""

    PIPELINE_START = "pipeline_start"
    PIPELINE_DONE = "pipeline_done"  # the pipeline's last word: ok, or the error and the phase it failed in
    PHASE_START = "phase_start"
    PHASE_END = "phase_end"
    PHASE_SKIPPED = "phase_skipped"
    STEP = "step"
    EVAL = "eval"
    RESUMED = "resumed"  # training went on from a checkpoint on the volume
    INTERRUPTED = "interrupted"
    TRAIN_DONE = "train_done"
    MERGE_DONE = "merge_done"
    PUSH_RETRY = "push_retry"
    PUSH_DONE = "push_done"
    WATCHDOG_STOP = "watchdog_stop"
    SELF_STOPPED = "self_stopped"
    WARNING = "warning"  # something the pod could not honour (a tracker it dropped, a setting): shown and reported
    CORRUPT = "corrupt"  # not written by anyone: how a reader reports a line that is not JSON


P = TypeVar("P", bound=PurePath)


@dataclass(frozen=True)
class RunPaths(Generic[P]):
    """Where each file of one run lives: `RunPaths(Path(d))` on the pod's own filesystem, `RunPaths.on_pod(d)`
    for the laptop, which names the same files as POSIX paths on a remote machine (`str(paths.events)`)."""

    root: P

    @staticmethod
    def on_pod(run_dir: str) -> RunPaths[PurePosixPath]:
        return RunPaths(PurePosixPath(run_dir))

    @property
    def events(self) -> P:
        return self.root / EVENTS

    @property
    def status(self) -> P:
        return self.root / STATUS

    @property
    def log(self) -> P:
        return self.root / TRAIN_LOG

    @property
    def recipe(self) -> P:
        return self.root / RECIPE

    @property
    def run_info(self) -> P:
        return self.root / RUN_INFO

    @property
    def report(self) -> P:
        return self.root / REPORT

    @property
    def push_result(self) -> P:
        return self.root / PUSH_RESULT

    @property
    def checkpoints(self) -> P:
        return self.root / CHECKPOINTS

    @property
    def adapter(self) -> P:
        return self.root / ADAPTER

    @property
    def merged(self) -> P:
        return self.root / MERGED

    @property
    def data(self) -> P:
        return self.root / DATA

    @property
    def exit_code(self) -> P:
        return self.root / EXIT_CODE

    @property
    def pid(self) -> P:
        return self.root / PID

    @property
    def watchdog_pid(self) -> P:
        return self.root / WATCHDOG_PID

    @property
    def watchdog_log(self) -> P:
        return self.root / WATCHDOG_LOG

    @property
    def watchdog_status(self) -> P:
        return self.root / WATCHDOG_STATUS

    @property
    def heartbeat(self) -> P:
        return self.root / HEARTBEAT


    @property
    def tensorboard(self) -> P:
        return self.root / TENSORBOARD

    @property
    def rank_logs(self) -> P:
        return self.root / RANK_LOGS

    @property
    def warm(self) -> WarmPaths[P]:
        return WarmPaths(self.root / WARM)


@dataclass(frozen=True)
class WarmPaths(Generic[P]):
    """The files of a warm start (remote/warm.py): the laptop starts it, the launch claims it or cancels it."""

    root: P

    @property
    def script(self) -> P:
        return self.root / WARM_SCRIPT

    @property
    def log(self) -> P:
        return self.root / WARM_LOG

    @property
    def pid(self) -> P:
        return self.root / WARM_PID

    @property
    def args(self) -> P:
        return self.root / WARM_ARGS

    @property
    def claim(self) -> P:
        return self.root / WARM_CLAIM

    @property
    def went(self) -> P:
        return self.root / WARM_WENT

    def boot_options(self, code: str, train_log: str, wait_s: float) -> list[str]:
        """remote/warm.py's options for this run: the synced code, the run's train.log and these files."""
        return ["--code", code, "--log", train_log, "--warm-log", str(self.log), "--claim", str(self.claim),
                "--args", str(self.args), "--went", str(self.went), "--wait-s", f"{wait_s:g}"]


@dataclass(frozen=True)
class WorkspacePaths(Generic[P]):
    """Where podtune's files live in one workspace: `WorkspacePaths(Path(d))` on the machine itself,
    `WorkspacePaths.on_pod(pod.workspace)` for the laptop, which names them as POSIX paths on a remote machine."""

    root: P

    @staticmethod
    def on_pod(workspace: str) -> WorkspacePaths[PurePosixPath]:
        return WorkspacePaths(PurePosixPath(workspace))

    @property
    def code(self) -> P:
        return self.root / CODE

    @property
    def constraints(self) -> P:
        return self.code / CONSTRAINTS

    @property
    def hf_home(self) -> P:
        return self.root / HF_HOME_DIR

    @property
    def venvs(self) -> P:
        return self.root / VENVS

    @property
    def secrets(self) -> P:
        return self.root / SECRETS

    @property
    def legacy_token(self) -> P:
        """Where podtune before per-run secret files kept the token (still removed at stop)."""
        return self.secrets / LEGACY_TOKEN

    @property
    def runs(self) -> P:
        return self.root / RUNS

    def run(self, run_id: str) -> RunPaths[P]:
        return RunPaths(self.runs / run_id)

    def last_python(self, requirements_key: str) -> P:
        """The python the last launch with these requirements used: the next warm start's guess."""
        return self.venvs / f"last-python-{requirements_key}"


@dataclass(frozen=True)
class RunInfo:
    """run.json: what the laptop tells the pod about a run at launch (the watchdog's limits, the card's facts).

    A missing or null field reads as its default here; what a default means (24 h, a 15 minute stall) is the
    watchdog's to decide."""

    run_id: str
    recipe: str | None = None
    provider: str | None = None
    pod_id: str | None = None
    gpu_type: str | None = None
    gpu_count: int | None = None
    usd_per_hour: float | None = None
    storage_usd_per_hour: float | None = None
    max_hours: float | None = None
    max_usd: float | None = None
    stall_minutes: float | None = None
    idle_after_finish_s: float | None = None
    self_stop_command: str | None = None
    launched_at: float | None = None
    billed_since: float | None = None
    podtune_version: str | None = None
    # The watchdog deletes these at every exit (the volume outlives the work).
    secret_files: tuple[str, ...] = ()
    # Knobs only tests set: the watchdog's SIGTERM-to-SIGKILL grace and poll interval.
    stop_grace_s: float | None = None
    watchdog_poll_s: float | None = None

    def to_json(self) -> str:
        return json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()})

    @classmethod
    def from_json(cls, text: str | bytes) -> RunInfo:
        """Fields it does not know are ignored, so a run.json from another podtune version still reads."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"{RUN_INFO} holds {type(data).__name__}, not an object")
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known and v is not None}
        values["secret_files"] = tuple(values.get("secret_files") or ())
        values.setdefault("run_id", "")
        return cls(**values)


class EventLog:
    """Appends events to events.jsonl and mirrors the latest state into status.json."""

    def __init__(self, run_dir: str | Path):
        self.paths = RunPaths(Path(run_dir))
        self.paths.root.mkdir(parents=True, exist_ok=True)
        self._status: dict[str, Any] = read_status(self.paths.status) or {}

    def emit(self, kind: str, **fields: Any) -> dict[str, Any]:
        record = {"ts": round(time.time(), 3), "kind": str(kind), **fields}  # an EventKind is stored as its value
        line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
        # One write of one line in append mode: readers never see half a record followed by another.
        with open(self.paths.events, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
        self._status.update({k: v for k, v in record.items() if k != "kind"})
        self._status["last_event"] = record["kind"]
        write_status(self.paths.status, self._status)
        return record

    def phase_start(self, phase: str, **fields: Any) -> None:
        self.emit(EventKind.PHASE_START, phase=phase, **fields)

    def phase_end(self, phase: str, ok: bool = True, **fields: Any) -> None:
        self.emit(EventKind.PHASE_END, phase=phase, ok=ok, **fields)


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
                events.append({"kind": EventKind.CORRUPT.value, "raw": raw.decode("utf-8", "replace")})
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
