"""One state per run for `podtune status`, from what the DB says and what the pod shows, never two that disagree.

The DB's status is final once a run ended (succeeded, failed, stopped); before that the pod is the truth."""

from __future__ import annotations

from dataclasses import dataclass

from .state import RunStatus

FINAL = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.STOPPED)


@dataclass
class RunState:
    state: str  # provisioning | running | finished | failed | stopped | succeeded | ended | not running
    reason: str | None = None  # why it failed or stopped, or what is odd
    warning: str | None = None  # something that costs money right now
    next: str = ""  # the command to type next


def one_state(run_id: str, recipe_path: str, status: str, message: str | None, *, rents: bool,
              pod_state: str | None, job_alive: bool | None, exit_code: int | None) -> RunState:
    """`pod_state` is None when the pod was not asked (a finished run, or none yet)."""
    if status in FINAL:
        warning = None
        if rents and pod_state == "RUNNING":
            warning = f"its pod is still RUNNING and billing; stop it: podtune stop {run_id}"
        reason = message if status != RunStatus.SUCCEEDED else None
        return RunState(status, reason, warning, _next(status, run_id, recipe_path))
    if status == RunStatus.ENDED:  # its pod stopped with nobody attached, and the outcome was not fetched
        return RunState("ended", "its pod stopped with no podtune attached; how the run ended is on the pod's volume",
                        None, f"podtune status {run_id} --yes  (starts the pod briefly to fetch it)")
    if pod_state is None:
        return RunState(status, message, None, f"podtune status {run_id}  (or podtune stop {run_id})")
    if pod_state != "RUNNING":
        # The pod stopped itself (watchdog limit, idle) or someone stopped it while no laptop was attached.
        return RunState("stopped", f"the pod is {pod_state} (stopped by its watchdog or by hand)", None,
                        _next("stopped", run_id, recipe_path))
    if job_alive:
        return RunState("running", None, None, f"podtune logs -f {run_id}  (stop: podtune stop {run_id})")
    if exit_code is not None:
        state = "finished" if exit_code == 0 else "failed"
        return RunState(state, None if exit_code == 0 else f"the job exited with code {exit_code}",
                        "the pod still runs until the result is collected" if rents else None,
                        f"podtune attach {run_id}  (collects the result, stops the pod, reports)")
    return RunState("not running", "the job is not running and left no exit code (killed?)",
                    "the pod still runs" if rents else None, f"podtune stop {run_id}")


def _next(state: str, run_id: str, recipe_path: str) -> str:
    if state == "succeeded":
        return f"podtune report {run_id}"
    if state == "failed":
        return f"podtune logs {run_id}  (then fix and: podtune run {recipe_path})"
    return f"podtune run {recipe_path}  (starts it again; report so far: podtune report {run_id})"
