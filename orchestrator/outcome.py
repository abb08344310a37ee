"""How a run ended: what the laptop learns (the pipeline's last event, the job's exit code, a pod that stopped with
nobody attached), and how that becomes the run's final status and summary in the state DB.

`podtune run/attach` and `podtune logs/status` settle a run the same way, so none of them needs the phase machine.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

from remote.events import EventKind, RunPaths, read_events

from .pod import retrieve
from .errors import PodtuneError
from .paths import local_run_dir
from .providers import Pod, PodState, Provider
from .report import RunSummary, add_loss_plot, build_summary
from .state import RunStatus, State
from .ui import UI


@dataclass(frozen=True)
class RunOutcome:
    """How a run's job ended, as far as the laptop knows."""

    ok: bool
    error: str | None = None
    phase: str | None = None  # the phase it failed or was stopped in, when known
    interrupted: bool = False  # stopped before its end (Ctrl-C on the pod, the watchdog, a stop from outside)
    unknown: bool = False  # its pod stopped with nobody attached and the volume was not read: the end is not known
    work_done: bool = False  # the pipeline wrote its last event: its report and log are final

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> RunOutcome:
        """From the pipeline's pipeline_done event, or an outcome record in the same shape (follow.py's)."""
        return cls(ok=bool(event.get("ok")), error=event.get("error"), phase=event.get("phase"),
                   interrupted=bool(event.get("interrupted")), work_done=event.get("kind") == EventKind.PIPELINE_DONE)

    @classmethod
    def from_exit_code(cls, code: int) -> RunOutcome:
        """A job that ended without a last event: its exit code is all there is."""
        return cls(ok=code == 0, error=None if code == 0 else f"the job exited with code {code}")

    @property
    def status(self) -> RunStatus:
        if self.ok:
            return RunStatus.SUCCEEDED
        if self.unknown:
            return RunStatus.ENDED
        return RunStatus.STOPPED if self.interrupted else RunStatus.FAILED


def record_pod_event(state: State, run_id: str, event: dict[str, Any]) -> None:
    """The pod's own phases, metered from their start and end events."""
    kind = event.get("kind")
    if kind == EventKind.PHASE_START:
        state.phase_started(run_id, event["phase"], event.get("ts"))
    elif kind == EventKind.PHASE_END:
        state.phase_ended(run_id, event["phase"], bool(event.get("ok", True)), event.get("ts"))


def record_outcome(state: State, run_id: str, outcome: RunOutcome) -> RunSummary:
    """The run's final status, message and summary, in the state DB and beside its local files."""
    summary = replace(add_loss_plot(build_summary(state, run_id), local_run_dir(run_id)), status=outcome.status)
    state.update_run(run_id, status=outcome.status, ended_at=time.time(), summary=summary.as_dict(),
                     message=outcome.error)
    (local_run_dir(run_id) / "summary.json").write_text(summary.to_json())
    return summary


def settle(state: State, ui: UI, run_id: str, provider: Provider, pod: Pod, *, yes: bool, retry: str,
           show: bool = False) -> RunOutcome:
    """How a run whose pod is no longer running ended. From the laptop's copy when it has the end; else fetched
    from the pod's volume by starting the pod briefly (asked, with the price, unless yes). The phases and the
    pod's billed time are then corrected from the pod's own events; `show` also puts those events on screen."""
    run = state.get_run(run_id)
    assert run is not None
    local = local_run_dir(run_id)
    if retrieve.has_end(local) or pod.state != PodState.STOPPED or not run.remote_dir:
        return stopped_outcome(run_id, pod)
    record = state.get_pod(pod.id)
    intervals = state.pod_intervals(pod.id)
    last = intervals[-1] if intervals else None  # the run's interval, open or closed when first seen stopped
    state.set_pod_status(pod.id, PodState.STOPPED)  # it is stopped now; when it stopped is learnt below

    def started(p: Pod) -> None:
        state.set_pod_status(p.id, PodState.RUNNING)
        ui.info(f"started pod {p.id} to fetch run {run_id}'s log and outcome from its volume")

    try:
        with retrieve.briefly_started(
            provider, pod, cost_per_hr=record.cost_per_hr if record else pod.cost_per_hr,
            confirm=(lambda _q: True) if yes else ui.confirm, what=f"run {run_id}'s log and outcome",
            retry=retry, on_start=started, on_stop=lambda at: state.set_pod_status(pod.id, PodState.STOPPED, at),
            on_wait=ui.waiting,
        ) as transport:
            got = retrieve.fetch_files(transport, run.remote_dir, local)
            got += [tree for tree in retrieve.TREES if retrieve.fetch_tree(transport, run.remote_dir, local, tree)]
    except PodtuneError as exc:
        ui.warn(f"{exc.message}. {exc.hint or ''}".strip())
        return RunOutcome(ok=False, unknown=True, phase=run.phase,
                          error=f"pod {pod.id} stopped with no podtune attached; the run's outcome and log are on "
                                f"its volume ({retry} --yes fetches them)")
    ui.info(f"fetched {', '.join(got) or 'nothing'} from pod {pod.id} and stopped it again")
    events, end = read_events(RunPaths(local).events, run.events_offset)
    for event in events:
        record_pod_event(state, run_id, event)
        if show:
            ui.event(event)
    state.update_run(run_id, events_offset=end)
    at = retrieve.stopped_at(retrieve.launch_events(local))
    if last is not None and at is not None and last[0] <= at and (last[1] is None or last[1] > at):
        state.correct_interval_end(pod.id, last[0], at)
    return stopped_outcome(run_id, pod)


def stopped_outcome(run_id: str, pod: Pod) -> RunOutcome:
    """What ended a run whose pod stopped while nobody watched: the last events the laptop has."""
    events = retrieve.launch_events(local_run_dir(run_id))
    done = next((e for e in reversed(events) if e.get("kind") == EventKind.PIPELINE_DONE), None)
    guard = next((e for e in reversed(events) if e.get("kind") == EventKind.WATCHDOG_STOP), None)
    if done is not None and (done.get("ok") or guard is None):
        return RunOutcome.from_event(done)
    open_phases = [e.get("phase") for e in events if e.get("kind") == EventKind.PHASE_START]
    phase = open_phases[-1] if open_phases else None
    if guard is not None:
        detail = f": {guard['detail']}" if guard.get("detail") else ""
        why = f"the pod's watchdog stopped it ({guard.get('reason')}{detail})"
    else:
        why = f"pod {pod.id} stopped before the job ended (stopped from outside podtune?)"
    return RunOutcome(ok=False, interrupted=True, error=why, phase=phase)
