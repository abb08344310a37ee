"""The pod's own guard: enforces max hours, max $, stall and idle-after-finish, then stops the pod itself.

    python -u -m remote watchdog --run-dir /workspace/runs/<run-id>

Started detached beside the pipeline (orchestrator/pod/remote_job.py), so it works with the laptop gone. Reads its
limits from `run.json`, polls once a second, and writes what it decided to `watchdog.json` (atomically) and, on a
stop, a `watchdog_stop` event. Standard library only: it must still stop the bill when the training env is broken.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .events import RUN_INFO, EventKind, EventLog, Phase, RunInfo, RunPaths, read_events, write_json

POLL_S = 1.0
HEARTBEAT_FRESH_S = 5.0  # the laptop rewrites it every ~2 s while it follows
ATTACHED_WAIT_MIN_S = 60.0  # an attached laptop gets this long to fetch the report and stop the pod itself
NON_TRAIN_QUIET_MIN = 120.0  # download/merge/push emit no steps: only this generous quiet limit applies there
STOP_GRACE_S = 60.0  # SIGTERM -> the trainer saves a checkpoint; SIGKILL after this
NO_PID_GRACE_S = 30.0  # launch writes `pid` before starting us; missing for this long = the pipeline never started
SELF_STOP_ATTEMPTS = 5
HAVE_PROC = Path("/proc/self/stat").exists()  # Linux; a macOS laptop (local provider) falls back to kill(pid, 0)


@dataclass(frozen=True)
class Stop:
    reason: str  # max_hours | max_usd | stall | idle_after_finish
    limit: float
    value: float
    detail: str = ""


def log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} watchdog: {message}", flush=True)


def _num(value: float | None, default: float | None) -> float | None:
    return default if value is None else float(value)


def _float(value: float | None, default: float) -> float:
    return default if value is None else float(value)


def read_run_info(run_dir: Path, wait_s: float = 3.0) -> RunInfo | None:
    # launch writes run.json before it starts us; the wait only covers a slow network filesystem.
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return RunInfo.from_json(RunPaths(run_dir).run_info.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.5)


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state, ppid, pgrp, ...); None if no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return raw.rsplit(")", 1)[1].split()  # the command name may itself contain spaces and ')'


def _exists(send, target: int) -> bool:
    try:
        send(target, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def pid_alive(pid: int) -> bool:
    """True while the process runs; a zombie counts as gone (nobody may reap it on a pod whose PID 1 is a shell)."""
    if not HAVE_PROC:
        return _exists(os.kill, pid)
    fields = _proc_stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def group_alive(pgid: int) -> bool:
    """True while any live (non-zombie) process is in the process group."""
    if not HAVE_PROC:
        return _exists(os.killpg, pgid)
    for entry in Path("/proc").iterdir():
        fields = _proc_stat(int(entry.name)) if entry.name.isdigit() else None
        if fields and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            return True
    return False


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            os.kill(pid, sig)  # not a group leader after all: signal the process itself


def terminate_group(pid: int, grace_s: float) -> str:
    """SIGTERM the pipeline's group, wait up to grace_s, then SIGKILL. Returns what it took."""
    if not group_alive(pid) and not pid_alive(pid):
        return "already gone"
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not group_alive(pid) and not pid_alive(pid):
            return "terminated"
        time.sleep(0.2)
    _signal_group(pid, signal.SIGKILL)
    return "killed"


def run_self_stop(command: str, attempts: int = SELF_STOP_ATTEMPTS,
                  backoff_s: float = 2.0) -> tuple[bool, int, str]:
    """Run the provider's self-stop command until it succeeds; (ok, attempts used, the path that stopped the pod,
    from its `... via PATH` line). Its output goes to our log."""
    for attempt in range(1, attempts + 1):
        log(f"self-stop attempt {attempt}/{attempts}: {command}")
        try:
            done = subprocess.run(command, shell=True, timeout=300, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
            rc, output = done.returncode, done.stdout or ""
        except subprocess.TimeoutExpired:
            rc, output = -1, ""
        for line in output.splitlines():
            log(line)
        if rc == 0:
            log("self-stop command succeeded")
            path = next((line.rsplit(" via ", 1)[1].strip() for line in reversed(output.splitlines())
                         if " via " in line), "")
            return True, attempt, path
        log(f"self-stop command failed (exit {rc})")
        if attempt < attempts:
            time.sleep(min(backoff_s * 2 ** (attempt - 1), 30.0))
    return False, attempts, ""


class Watchdog:
    """One run's guard. `tick(now)` observes the run dir and returns a Stop, "exit", or None (keep watching)."""

    def __init__(self, run_dir: Path, info: RunInfo, now: float | None = None):
        now = time.time() if now is None else now
        self.run_dir = run_dir
        self.paths = RunPaths(run_dir)
        self.started_at = now
        # Money and hours count from when billing began (run.py may record it); launch time otherwise.
        self.billed_since = _float(info.billed_since, _float(info.launched_at, now))
        self.max_hours = _float(info.max_hours, 24.0)
        self.max_usd = _num(info.max_usd, None)
        self.usd_per_hour = (_num(info.usd_per_hour, 0.0) or 0.0) + (_num(info.storage_usd_per_hour, 0.0) or 0.0)
        self.stall_s = (_num(info.stall_minutes, 15.0) or 15.0) * 60
        self.idle_after_finish_s = _num(info.idle_after_finish_s, 0.0) or 0.0
        self.stop_grace_s = _float(info.stop_grace_s, STOP_GRACE_S)
        self.poll_s = _float(info.watchdog_poll_s, POLL_S)
        self.self_stop_command: str | None = info.self_stop_command or None
        self.secret_files: list[str] = list(info.secret_files)
        self.offset = 0
        self.events_size = -1
        self.done_offset: int | None = None  # where this launch's events begin (earlier launches' came before)
        self.work_done = False  # this launch's pipeline wrote its final event (pipeline_done)
        self.phase: str | None = None
        self.last_progress = now
        self.finished_at: float | None = None
        self.pid: int | None = None
        self.decision: dict[str, Any] = {}
        self.status: dict[str, Any] = {}

    # ---- observing ----------------------------------------------------------------------------------------
    def observe(self, now: float) -> None:
        if self.pid is None:
            with contextlib.suppress(FileNotFoundError, ValueError):
                self.pid = int(self.paths.pid.read_text().strip())
        try:
            size = self.paths.events.stat().st_size
        except FileNotFoundError:
            size = 0
        if self.done_offset is None:
            self.done_offset = size  # the pipeline writes its first event seconds after we start (its imports)
        if size != self.events_size:
            # Any growth of events.jsonl is progress; what the phase is comes from phase_start/phase_end.
            if self.events_size >= 0:
                self.last_progress = now
            self.events_size = size
            events, self.offset = read_events(self.paths.events, self.offset)
            fresh, self.done_offset = read_events(self.paths.events, self.done_offset)
            # The work is over at the pipeline's last event, not when its interpreter has finished tearing down.
            self.work_done = self.work_done or any(e.get("kind") == EventKind.PIPELINE_DONE for e in fresh)
            for event in events:
                if event.get("kind") == EventKind.PHASE_START:
                    self.phase = event.get("phase")
                    self.last_progress = now
                elif event.get("kind") == EventKind.PHASE_END:
                    self.phase = None
        if self.finished_at is None and self.pipeline_finished(now):
            self.finished_at = now
            log(f"pipeline finished (pid {self.pid}); phase {self.phase}")

    def pipeline_alive(self) -> bool:
        return self.pid is not None and pid_alive(self.pid)

    def pipeline_finished(self, now: float) -> bool:
        if self.work_done or self.paths.exit_code.exists():
            return True
        if self.pid is None:
            return now - self.started_at >= NO_PID_GRACE_S
        return not pid_alive(self.pid)

    def laptop_attached(self, now: float) -> bool:
        # The file's mtime is set by this machine's clock; the laptop's timestamp inside may be skewed.
        try:
            return now - self.paths.heartbeat.stat().st_mtime < HEARTBEAT_FRESH_S
        except FileNotFoundError:
            return False

    # ---- deciding -----------------------------------------------------------------------------------------
    def check_limits(self, now: float) -> Stop | None:
        hours = max(0.0, now - self.billed_since) / 3600
        if self.max_hours is not None and hours >= self.max_hours:
            return Stop("max_hours", self.max_hours, round(hours, 4), "pod running time since launch")
        spent = hours * self.usd_per_hour
        if self.max_usd is not None and spent >= self.max_usd:
            return Stop("max_usd", self.max_usd, round(spent, 4), f"{hours:.4f} h at ${self.usd_per_hour:.4f}/h")
        if self.finished_at is None and self.pipeline_alive():
            quiet = now - self.last_progress
            limit = self.stall_s if self.phase == Phase.TRAIN else max(self.stall_s, NON_TRAIN_QUIET_MIN * 60)
            if quiet >= limit:
                where = self.phase or "startup"
                return Stop("stall", round(limit, 3), round(quiet, 3), f"no progress in phase {where}")
        return None

    def after_finish(self, now: float) -> Stop | str | None:
        assert self.finished_at is not None
        if not self.self_stop_command:
            return "exit"  # nothing bills (local provider): the laptop or the user cleans up
        idle = now - self.finished_at
        window = max(self.idle_after_finish_s, ATTACHED_WAIT_MIN_S)
        if self.laptop_attached(now) and idle < window:
            self.set_status("finished", detail="laptop attached: leaving the stop to it",
                            wait_until=self.finished_at + window)
            return None
        if idle >= self.idle_after_finish_s:
            why = "laptop attached but the pod was not stopped in time" if self.laptop_attached(now) else "laptop gone"
            return Stop("idle_after_finish", self.idle_after_finish_s, round(idle, 3), why)
        self.set_status("finished", detail="idling before self-stop",
                        wait_until=self.finished_at + self.idle_after_finish_s)
        return None

    def tick(self, now: float) -> Stop | str | None:
        self.observe(now)
        stop = self.check_limits(now)
        if stop is not None:
            return stop
        if self.finished_at is not None:
            return self.after_finish(now)
        self.set_status("watching", phase=self.phase)
        return None

    # ---- acting -------------------------------------------------------------------------------------------
    def set_status(self, state: str, **fields: Any) -> None:
        status = {"state": state, **fields}
        if status == self.status:
            return  # written on change only: the volume is not hammered once a second
        self.status = status
        record = {
            **status, "updated_at": round(time.time(), 3), "watchdog_pid": os.getpid(), "pipeline_pid": self.pid,
            "finished_at": self.finished_at, "decision": self.decision,
            "limits": {"max_hours": self.max_hours, "max_usd": self.max_usd, "stall_s": self.stall_s,
                       "idle_after_finish_s": self.idle_after_finish_s, "usd_per_hour": self.usd_per_hour},
        }
        write_json(self.paths.watchdog_status, record)

    def remove_secrets(self) -> None:
        """The Hub token file must not outlive the work on a volume that stays around after the stop."""
        for path in self.secret_files:
            try:
                os.unlink(path)
                log(f"removed {path}")
            except FileNotFoundError:
                pass
            except OSError as exc:
                log(f"could not remove {path}: {exc.__class__.__name__}")

    def stop(self, stop: Stop) -> int:
        log(f"limit reached: {stop.reason} (limit {stop.limit}, value {stop.value}) {stop.detail}")
        self.decision = {"reason": stop.reason, "limit": stop.limit, "value": stop.value, "detail": stop.detail,
                         "at": round(time.time(), 3)}
        self.set_status("stopping", reason=stop.reason)
        try:
            EventLog(self.run_dir).emit(EventKind.WATCHDOG_STOP, reason=stop.reason, limit=stop.limit, value=stop.value,
                                        detail=stop.detail)
        except OSError as exc:  # a full disk must not keep the pod billing
            log(f"could not write the event: {exc}")
        if self.pid is not None and self.finished_at is None:
            outcome = terminate_group(self.pid, self.stop_grace_s)
            log(f"pipeline process group {self.pid}: {outcome}")
            self.decision["pipeline"] = outcome
        self.remove_secrets()
        if not self.self_stop_command:
            self.set_status("stopped", reason=stop.reason, self_stop="no self-stop command (nothing bills)")
            return 0
        ok, attempts, path = run_self_stop(self.self_stop_command)
        self.decision.update(self_stop_ok=ok, self_stop_attempts=attempts, self_stop_at=round(time.time(), 3),
                             self_stop_path=path)
        if ok:
            try:  # the report says which API path stopped the pod (v2 /action or the GraphQL fallback)
                EventLog(self.run_dir).emit(EventKind.SELF_STOPPED, path=path or "unknown", reason=stop.reason)
            except OSError as exc:
                log(f"could not write the event: {exc}")
        self.set_status("stopped" if ok else "self_stop_failed", reason=stop.reason)
        return 0 if ok else 1

    def run(self) -> int:
        try:
            return self._watch()
        finally:
            self.remove_secrets()  # every exit: finished, stopped, told to stop (SIGTERM), or crashed

    def _watch(self) -> int:
        # Bounded even if every check above were wrong: never outlive max_hours + 1 h.
        deadline = self.billed_since + (self.max_hours or 24.0) * 3600 + 3600
        log(f"watching {self.run_dir} (pid {os.getpid()}); self-stop {'set' if self.self_stop_command else 'none'}")
        while True:
            now = time.time()
            outcome = self.tick(now)
            if isinstance(outcome, Stop):
                return self.stop(outcome)
            if outcome == "exit":
                log("pipeline finished and there is no self-stop command: exiting")
                self.set_status("finished", detail="no self-stop command (nothing bills)")
                return 0
            if now >= deadline:
                return self.stop(Stop("max_hours", self.max_hours or 24.0, round((now - self.billed_since) / 3600, 4),
                                      "watchdog deadline"))
            time.sleep(self.poll_s)


def main(run_dir: Path) -> int:
    run_dir = Path(run_dir)
    info = read_run_info(run_dir)
    if info is None:
        log(f"no readable {RUN_INFO} in {run_dir}: no limits to enforce")
        return 2
    # `podtune stop` ends us with SIGTERM: exit through run()'s finally, which removes the token.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    return Watchdog(run_dir, info).run()
