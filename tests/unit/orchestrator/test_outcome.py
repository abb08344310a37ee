"""How a run ended, as the laptop learns it and records it: status, message and summary, with no phase machine."""

from __future__ import annotations

import json
import time

import pytest

from orchestrator.outcome import RunOutcome, record_outcome, stopped_outcome
from orchestrator.paths import local_run_dir
from orchestrator.providers.base import Pod, PodState
from orchestrator.report import RunSummary
from orchestrator.state import RunRecord, RunStatus, State

POD = Pod(id="p-1", name="p", provider="fake", state=PodState.STOPPED)


@pytest.fixture()
def state():
    s = State()
    s.add_run(RunRecord(id="r-1", recipe_name="t", recipe_path="/nowhere/t.yaml", provider="fake",
                        status=RunStatus.DETACHED, created_at=time.time() - 60, pod_id=None, remote_dir="/w/runs/r-1"))
    yield s
    s.close()


def _events(*events: dict) -> None:
    (local_run_dir("r-1") / "events.jsonl").write_text("".join(json.dumps({"ts": time.time(), **e}) + "\n" for e in events))


@pytest.mark.parametrize("event, status", [
    ({"kind": "pipeline_done", "ok": True}, RunStatus.SUCCEEDED),
    ({"kind": "pipeline_done", "ok": False, "error": "OOM", "phase": "train"}, RunStatus.FAILED),
    ({"kind": "pipeline_done", "ok": False, "interrupted": True}, RunStatus.STOPPED),
])
def test_the_pipelines_last_event_is_the_runs_status(event, status):
    outcome = RunOutcome.from_event(event)
    assert outcome.status == status and outcome.work_done
    assert outcome.error == event.get("error") and outcome.phase == event.get("phase")


def test_an_outcome_record_that_is_not_the_pipelines_leaves_the_job_to_be_ended():
    outcome = RunOutcome.from_event({"ok": False, "interrupted": True, "error": "the job's processes are gone"})
    assert outcome.status == RunStatus.STOPPED and not outcome.work_done
    assert RunOutcome.from_exit_code(0).status == RunStatus.SUCCEEDED
    assert RunOutcome.from_exit_code(3) == RunOutcome(ok=False, error="the job exited with code 3")


def test_a_pod_stopped_by_its_watchdog_says_so_with_the_phase_it_was_in():
    _events({"kind": "phase_start", "phase": "download"}, {"kind": "phase_start", "phase": "train"},
            {"kind": "watchdog_stop", "reason": "stall", "detail": "no progress for 15 min"})
    outcome = stopped_outcome("r-1", POD)
    assert outcome == RunOutcome(ok=False, interrupted=True, phase="train",
                                 error="the pod's watchdog stopped it (stall: no progress for 15 min)")


def test_a_pod_stopped_from_outside_before_the_end_is_a_stopped_run():
    _events({"kind": "phase_start", "phase": "train"})
    outcome = stopped_outcome("r-1", POD)
    assert outcome.status == RunStatus.STOPPED and "pod p-1 stopped before the job ended" in (outcome.error or "")


def test_recording_an_outcome_stores_status_message_and_a_summary_that_loads_back(state):
    _events({"kind": "step", "step": 1, "loss": 2.0}, {"kind": "step", "step": 2, "loss": 1.5},
            {"kind": "pipeline_done", "ok": False, "error": "disk full", "phase": "merge"})
    summary = record_outcome(state, "r-1", stopped_outcome("r-1", POD))
    run = state.get_run("r-1")
    assert run is not None and run.status == RunStatus.FAILED and run.message == "disk full" and run.ended_at
    assert summary.status == RunStatus.FAILED and summary.loss_curve == ((1, 2.0), (2, 1.5))
    assert RunSummary.from_dict(run.summary or {}) == summary
    on_disk = json.loads((local_run_dir("r-1") / "summary.json").read_text())
    assert on_disk["status"] == "failed" and on_disk["loss_png"] == str(local_run_dir("r-1") / "loss.png")
    assert on_disk == run.summary
