"""Starting a job on a pod (run, resume, push): one path, and a failure or Ctrl-C in any of its steps stops the pod."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from rich.console import Console

import orchestrator.pod.remote_job as remote_job
import orchestrator.run as run_module
from orchestrator.errors import PodtuneError, RemoteJobError, SSHError
from orchestrator.providers.local import LocalProvider
from orchestrator.run import JobStart, Runner, RunOptions, load_recipe_or_fail
from orchestrator.state import RunRecord, RunStatus, State
from orchestrator.ui import UI
from tests.conftest import REPO
from tests.e2e.helpers import process_alive, wait_for

RECIPE = REPO / "recipes" / "tiny-cpu.yaml"
# The step that breaks, and the phase it is recorded in (the job's launch ends the setup phase).
PHASE_OF = {"connect": "connect", "sync": "sync", "setup": "setup", "launch": "setup"}


class RentedHere(LocalProvider):
    """This machine, billed as if rented: what the guard must stop."""

    rents = True

    def __init__(self, fail_connect: bool = False):
        self.fail_connect = fail_connect
        self.stops: list[str] = []

    def connect(self, pod, *, timeout_s, on_wait=None):
        if self.fail_connect:
            raise SSHError("connection refused")
        return super().connect(pod, timeout_s=timeout_s, on_wait=on_wait)

    def stop(self, pod_id: str) -> None:
        self.stops.append(pod_id)


def _breaks(step: str, monkeypatch, error: BaseException) -> None:
    def boom(*_args, **_kwargs):
        raise error

    if step == "sync":
        monkeypatch.setattr(run_module, "sync", boom)
    elif step == "setup":
        monkeypatch.setattr(run_module, "prepare", boom)
    elif step == "launch":
        monkeypatch.setattr(remote_job, "launch", boom)


def _start(status: RunStatus, *, fail_connect: bool = False, fails_run: bool = True):
    state, out = State(), io.StringIO()
    runner = Runner(state, UI(Console(file=out, width=200)))
    state.add_run(RunRecord(id="r-1", recipe_name="tiny-cpu", recipe_path=str(RECIPE), provider="local",
                            status=status, created_at=time.time()))
    recipe = load_recipe_or_fail(RECIPE)
    provider = RentedHere(fail_connect)
    job = JobStart(recipe, (), None, fails_run=fails_run)

    def start() -> None:
        runner.start_job("r-1", provider, job, RunOptions(),
                         provision=lambda: runner.provision("r-1", recipe, provider, ("cpu",)))

    return state, out, provider, start


def _warm_pids(monkeypatch) -> list[int]:
    """The pids of the warm starts (the pod's Python started ahead of the launch) this test makes."""
    pids: list[int] = []
    real = remote_job.start_warm

    def recorded(transport, layout, run_id, *args, **kwargs):
        warm = real(transport, layout, run_id, *args, **kwargs)
        pids.append(int(Path(str(layout.run(run_id).warm.pid)).read_text()))
        return warm

    monkeypatch.setattr(remote_job, "start_warm", recorded)
    return pids


@pytest.mark.parametrize("step", list(PHASE_OF))
def test_a_failure_in_any_step_before_the_job_runs_stops_the_pod_and_fails_the_run(step, monkeypatch):
    _breaks(step, monkeypatch, RemoteJobError(f"{step} broke"))
    warm_pids = _warm_pids(monkeypatch)
    state, out, provider, start = _start(RunStatus.PROVISIONING, fail_connect=step == "connect")
    with pytest.raises(PodtuneError, match="connection refused" if step == "connect" else f"{step} broke"):
        start()
    assert provider.stops == ["local"], "the pod was left billing"
    assert len(warm_pids) == (0 if step == "connect" else 1)
    for pid in warm_pids:
        wait_for(lambda: not process_alive(pid), 10, "the Python started ahead of the launch to end")
    assert "failed before the job started on the pod: stopped pod local so it does not bill" in out.getvalue()
    run = state.get_run("r-1")
    assert run is not None and run.status == RunStatus.FAILED and run.message
    phases = {p["phase"]: p["ok"] for p in state.phases("r-1")}
    assert phases[PHASE_OF[step]] == 0 and phases["provision"] == 1


def test_ctrl_c_during_the_sync_stops_the_pod_too(monkeypatch):
    _breaks("sync", monkeypatch, KeyboardInterrupt())
    state, out, provider, start = _start(RunStatus.PROVISIONING)
    with pytest.raises(KeyboardInterrupt):
        start()
    assert provider.stops == ["local"] and "interrupted: stopped pod local so it does not bill" in out.getvalue()


def test_a_push_that_cannot_start_stops_the_pod_and_leaves_the_runs_outcome(monkeypatch):
    _breaks("setup", monkeypatch, RemoteJobError("setup broke"))
    state, _, provider, start = _start(RunStatus.SUCCEEDED, fails_run=False)
    with pytest.raises(RemoteJobError):
        start()
    run = state.get_run("r-1")
    assert provider.stops == ["local"] and run is not None and run.status == RunStatus.SUCCEEDED


def test_ctrl_c_while_a_new_pod_is_being_recorded_stops_that_pod(monkeypatch):
    """Between the provider's create and the run knowing its pod, the start-job guard has no pod to stop."""
    state, out, provider, start = _start(RunStatus.PROVISIONING)
    real_update = state.update_run

    def interrupted(run_id, **fields):
        if "pod_id" in fields:
            raise KeyboardInterrupt
        return real_update(run_id, **fields)

    monkeypatch.setattr(state, "update_run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        start()
    assert provider.stops == ["local"], "a pod the run never recorded was left billing"
    assert "interrupted: stopped pod local so it does not bill" in out.getvalue()


def test_a_push_that_cannot_start_says_how_to_try_the_push_again(monkeypatch):
    _breaks("setup", monkeypatch, RemoteJobError("setup broke"))
    state, out = State(), io.StringIO()
    runner = Runner(state, UI(Console(file=out, width=200)))
    state.add_run(RunRecord(id="r-1", recipe_name="tiny-cpu", recipe_path=str(RECIPE), provider="local",
                            status=RunStatus.SUCCEEDED, created_at=time.time()))
    provider = RentedHere()
    job = JobStart(load_recipe_or_fail(RECIPE), None, None, fails_run=False, retry="`podtune push r-1` tries again")
    with pytest.raises(RemoteJobError):
        runner.start_job("r-1", provider, job, RunOptions(),
                         provision=lambda: runner.provision("r-1", job.recipe, provider, ("cpu",)))
    said = " ".join(out.getvalue().split())
    assert "stopped pod local so it does not bill (its volume is kept; `podtune push r-1` tries again)" in said
    assert "podtune run" not in said
