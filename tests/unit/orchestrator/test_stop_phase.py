"""The stop phase: the bill stops at the pipeline's last event, not after its interpreter has torn down."""

from __future__ import annotations

import io
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
from remote.events import HEARTBEAT


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


class CountingTransport(LocalTransport):
    """The pod's shell and files, counting every request the laptop makes (each is a round trip to a real pod)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def exec(self, command, **kw):
        self.calls.append("exec")
        return super().exec(command, **kw)

    def stream(self, command, **kw):
        self.calls.append("stream")
        return super().stream(command, **kw)

    def read_bytes(self, path, offset=0, limit=None):
        self.calls.append(f"read {path}")
        return super().read_bytes(path, offset, limit)

    def write_bytes(self, path, data, mode=0o644):
        self.calls.append(f"write {path}")
        return super().write_bytes(path, data, mode)

    def remove(self, path):
        self.calls.append(f"remove {path}")
        return super().remove(path)


def _secrets(pod: Pod) -> list[Path]:
    from orchestrator.pod.pod_secrets import secret_files
    from remote.events import WorkspacePaths

    layout = WorkspacePaths.on_pod(pod.workspace)
    return [Path(p) for p in secret_files(layout, "r-1") if p.startswith(pod.workspace)]


def test_a_finished_run_asks_the_pod_once_before_the_stop_and_gets_its_files_byte_for_byte(job, tmp_path):
    """The report, the log and the secrets' deletion used to be ~26 SFTP requests answered one by one: ~2.6 s of
    billed GPU to a pod 100 ms away before the stop was asked."""
    state, pod, run_dir, proc, done = job
    log = b"step 1\n\xff\xfe not utf-8\nreport.json 12\nlast line without newline"
    (run_dir / "train.log").write_bytes(log)
    (run_dir / "report.json").write_text('{"final_loss": 1.5}')
    for secret in _secrets(pod):
        secret.parent.mkdir(parents=True, exist_ok=True)
        secret.write_text("hf_canary")
    local = Path(os.environ["PODTUNE_HOME"]) / "runs" / "r-1"
    local.mkdir(parents=True, exist_ok=True)  # the launch left the recipe there: it reports to no tracker
    (local / "recipe.yaml").write_text((Path(__file__).parents[3] / "recipes" / "tiny-cpu.yaml").read_text())
    transport = CountingTransport()
    provider = RecordingProvider(run_dir / "pid")
    stop = provider.stop
    asked: list[list[str]] = []
    provider.stop = lambda pod_id: (asked.append(list(transport.calls)), stop(pod_id))  # type: ignore[method-assign]
    Runner(state, UI(Console(file=open(os.devnull, "w")))).finish("r-1", transport, provider, pod, done)
    assert asked == [["stream"]], asked
    assert (local / "train.log").read_bytes() == log
    assert json.loads((local / "report.json").read_text()) == {"final_loss": 1.5}
    assert not (local / "exit_code").exists()  # not on the pod: not made up
    assert float((run_dir / HEARTBEAT).read_text()) > time.time() - 60  # the watchdog knew a laptop was there
    assert not [p for p in _secrets(pod) if p.exists()]


def test_secrets_that_cannot_be_deleted_are_said_and_the_pod_is_stopped_anyway(job):
    state, pod, run_dir, proc, done = job
    stuck = _secrets(pod)[0]
    (stuck / "not a file").mkdir(parents=True)  # `rm -f` refuses a directory
    provider = RecordingProvider(run_dir / "pid")
    out = io.StringIO()
    Runner(state, UI(Console(file=out, width=200))).finish("r-1", LocalTransport(), provider, pod, done)
    said = " ".join(out.getvalue().split())
    assert "deleting the run's secrets on the pod failed" in said and f"stopping pod {pod.id} anyway" in said
    assert len(provider.stops) == 1 and provider.stops[0]["report_collected"]


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
