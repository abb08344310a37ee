"""The stop phase: the bill stops at the pipeline's last event, not after its interpreter has torn down."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from rich.console import Console

from orchestrator.outcome import RunOutcome
from orchestrator.providers.base import Pod, PodState
from orchestrator.run import Runner
from orchestrator.state import RunRecord, State
from orchestrator.pod.transport import LocalTransport
from orchestrator.ui import UI


class RecordingProvider:
    """A provider that rents (and bills); its stop records whether the pipeline's process was still there."""

    name = "fake"
    rents = True

    def __init__(self, pid_file: Path):
        self.pid_file = pid_file
        self.stops: list[dict] = []

    def stop(self, pod_id: str) -> None:
        pid = int(self.pid_file.read_text())
        self.stops.append({"at": time.time(), "pipeline_alive": _alive(pid),
                           "report_collected": (Path(os.environ["PODTUNE_HOME"]) / "runs" / "r-1" / "report.json").exists()})


class OwnMachine(RecordingProvider):
    rents = False


def _alive(pgid: int) -> bool:
    from remote.watchdog import group_alive

    return group_alive(pgid)  # zombies are gone (this machine's PID 1 reaps orphans only now and then)


@pytest.fixture()
def job(tmp_path):
    """A finished run whose pipeline has written pipeline_done but whose interpreter is still exiting (60 s)."""
    run_dir = tmp_path / "ws" / "runs" / "r-1"
    run_dir.mkdir(parents=True)
    done = {"ts": time.time(), "kind": "pipeline_done", "ok": True}
    (run_dir / "events.jsonl").write_text(json.dumps(done) + "\n")
    (run_dir / "report.json").write_text("{}")
    (run_dir / "train.log").write_text("done\n")
    proc = subprocess.Popen(["sh", "-c", "sleep 60"], start_new_session=True)
    threading.Thread(target=proc.wait, daemon=True).start()  # reaped at once, as the pod's init would
    (run_dir / "pid").write_text(f"{proc.pid}\n")
    state = State()
    state.add_run(RunRecord(id="r-1", recipe_name="t", recipe_path=str(tmp_path / "t.yaml"), provider="fake",
                            status="running", created_at=time.time(), pod_id="p-1", remote_dir=str(run_dir)))
    pod = Pod(id="p-1", name="p", provider="fake", state=PodState.RUNNING, workspace=str(tmp_path / "ws"))
    yield state, pod, run_dir, proc, RunOutcome.from_event(done)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def test_a_rented_pod_is_stopped_at_the_last_event_without_waiting_for_the_interpreter(job):
    state, pod, run_dir, proc, done = job
    provider = RecordingProvider(run_dir / "pid")
    started = time.time()
    Runner(state, UI(Console(file=open(os.devnull, "w")))).finish("r-1", LocalTransport(), provider, pod, done)
    (stop,) = provider.stops
    assert stop["pipeline_alive"], "the laptop waited for (or killed) the interpreter before stopping the pod"
    assert stop["report_collected"], "the report must be on the laptop before the pod goes"
    assert stop["at"] - started < 2.0  # not the old kill loop's wait for the interpreter


def test_on_the_users_own_machine_the_job_still_ends_after_the_stop(job):
    state, pod, run_dir, proc, done = job
    provider = OwnMachine(run_dir / "pid")
    Runner(state, UI(Console(file=open(os.devnull, "w")))).finish("r-1", LocalTransport(), provider, pod, done)
    assert len(provider.stops) == 1
    proc.wait(10)
    assert not _alive(proc.pid), "the job outlived the stop phase on a machine that stays up"


def test_a_group_of_only_zombies_counts_as_ended():
    """A pod whose PID 1 is a shell never reaps: waiting on `kill -0` would sit out the whole grace period."""
    from orchestrator.pod.remote_job import group_alive_command

    live = subprocess.Popen(["sleep", "30"], start_new_session=True)
    dead = subprocess.Popen(["true"], start_new_session=True)  # never waited for: a zombie in its own group
    try:
        deadline = time.time() + 10
        while Path(f"/proc/{dead.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z" and time.time() < deadline:
            time.sleep(0.02)
        transport = LocalTransport()
        assert transport.exec(group_alive_command(live.pid)).rc == 0
        assert transport.exec(group_alive_command(dead.pid)).rc == 1
    finally:
        live.kill()
        live.wait()
        dead.wait()
