"""`status` gives one state per run: an ended run is never RUNNING, a pod that stopped itself says so."""

from __future__ import annotations

import pytest

from orchestrator.run_state import one_state


def _state(status, pod_state=None, job_alive=None, exit_code=None, rents=True, message=None):
    return one_state("r1", "recipes/x.yaml", status, message, rents=rents, pod_state=pod_state,
                     job_alive=job_alive, exit_code=exit_code)


@pytest.mark.parametrize("status", ["succeeded", "failed", "stopped"])
def test_an_ended_run_keeps_its_state_whatever_the_machine_says(status):
    got = _state(status, pod_state="RUNNING", rents=False, message="stopped by podtune stop")
    assert got.state == status and got.warning is None


def test_a_stopped_run_gives_its_reason_and_how_to_start_again():
    got = _state("stopped", pod_state="EXITED", message="watchdog: max_hours 1 reached")
    assert got.reason == "watchdog: max_hours 1 reached" and got.next.startswith("podtune run recipes/x.yaml")


def test_an_ended_run_whose_rented_pod_still_runs_is_a_warning():
    got = _state("failed", pod_state="RUNNING", message="DataError: ...")
    assert got.state == "failed" and "still RUNNING and billing" in got.warning and "podtune stop r1" in got.warning
    assert got.next.startswith("podtune logs r1")


def test_live_states_come_from_the_pod():
    assert _state("detached", "RUNNING", job_alive=True).state == "running"
    assert _state("detached", "EXITED").state == "stopped"
    done = _state("detached", "RUNNING", job_alive=False, exit_code=0)
    assert done.state == "finished" and done.next.startswith("podtune attach r1")
    assert _state("running", "RUNNING", job_alive=False, exit_code=1).state == "failed"
    assert _state("running", "RUNNING", job_alive=False, exit_code=None).state == "not running"
    assert _state("succeeded").next == "podtune report r1"
