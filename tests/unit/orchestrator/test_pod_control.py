"""A run's pod acted on without the phase machine, as `podtune stop/status/logs/ssh` do: find it, end its job, stop it."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest

from orchestrator.errors import PodGone, PodtuneError
from orchestrator.pod_control import resolve_run, stop_job, stop_pod
from orchestrator.pod.pod_secrets import token_paths
from orchestrator.providers.base import Pod, PodState
from orchestrator.pod.remote_job import group_alive_command
from orchestrator.state import PodRecord, RunRecord, RunStatus, State
from orchestrator.pod.transport import LocalTransport
from remote.events import WorkspacePaths
from tests.conftest import REPO

TINY = REPO / "recipes" / "tiny-cpu.yaml"


class BilledProvider:
    """A provider that bills until stopped, and that may have lost the pod."""

    name = "fake"
    rents = True

    def __init__(self, pod: Pod | None):
        self.pod = pod
        self.stops: list[str] = []

    def get(self, pod_id: str) -> Pod | None:
        return self.pod

    def stop(self, pod_id: str) -> None:
        self.stops.append(pod_id)


@pytest.fixture()
def state():
    s = State()
    yield s
    s.close()


def _add_run(state: State, run_id: str, provider: str = "local", **fields) -> None:
    state.add_run(RunRecord(id=run_id, recipe_name="tiny-cpu", recipe_path=str(TINY), provider=provider,
                            status=RunStatus.RUNNING, created_at=time.time(), **fields))


def test_a_run_resolves_to_its_provider_and_pod_from_its_recipe(state, tmp_path):
    _add_run(state, "r-1", pod_id="local", remote_dir=str(tmp_path / "runs" / "r-1"))
    run, provider, pod = resolve_run(state, "r-1")
    assert run.id == "r-1" and provider.name == "local"
    assert pod.id == "local" and pod.state == PodState.RUNNING


def test_what_cannot_be_resolved_says_why_and_what_to_type(state):
    with pytest.raises(PodtuneError, match="no run 'nope'") as missing:
        resolve_run(state, "nope")
    assert missing.value.hint == "list runs with: podtune runs"
    _add_run(state, "r-2")
    with pytest.raises(PodtuneError, match="run r-2 never reached a pod"):
        resolve_run(state, "r-2")
    _add_run(state, "r-3", provider="fake", pod_id="p-3", remote_dir="/workspace/runs/r-3")
    with pytest.raises(PodGone, match="pod p-3 of run r-3 no longer exists"):
        resolve_run(state, "r-3", BilledProvider(None))


def test_stopping_a_pod_goes_through_its_provider_and_stops_the_laptops_meter(state):
    state.upsert_pod(PodRecord(id="p-1", provider="fake", name="podtune-t", status=PodState.RUNNING,
                               created_at=time.time(), cost_per_hr=1.0))
    state.set_pod_status("p-1", PodState.RUNNING)
    provider = BilledProvider(Pod(id="p-1", name="podtune-t", provider="fake", state=PodState.RUNNING))
    stop_pod(state, provider, "p-1")
    assert provider.stops == ["p-1"]
    record = state.get_pod("p-1")
    assert record is not None and record.status == PodState.STOPPED
    assert all(end is not None for _, end in state.pod_intervals("p-1"))


def test_stopping_a_job_removes_its_token_and_ends_its_process_group(tmp_path):
    workspace = tmp_path / "ws"
    layout = WorkspacePaths.on_pod(str(workspace))
    run_dir = workspace / "runs" / "r-1"
    run_dir.mkdir(parents=True)
    token = Path(token_paths(layout, "r-1")[1])  # on the volume (the first choice is a RAM folder this machine shares)
    token.parent.mkdir(parents=True)
    token.write_text("hf_secret")
    job = subprocess.Popen(["sh", "-c", "sleep 60 & sleep 60"], start_new_session=True)
    threading.Thread(target=job.wait, daemon=True).start()  # reaped at once, as the pod's init would
    (run_dir / "pid").write_text(f"{job.pid}\n")
    pod = Pod(id="p-1", name="p", provider="fake", state=PodState.RUNNING, workspace=str(workspace))

    assert stop_job(LocalTransport(), pod, str(run_dir)) == ["pid"]

    assert not token.exists()
    alive = LocalTransport().exec(group_alive_command(job.pid), timeout_s=10).rc == 0
    assert not alive, "a process of the job's group outlived the stop"
