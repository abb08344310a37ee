"""Commands on an existing run from any terminal: logs, status, stop. All re-attach through the state DB."""

from __future__ import annotations

import json
import shlex
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from remote.events import EventKind, RunPaths

from .pod import remote_job
from .errors import PodGone, PodStopped, PodtuneError, SSHError
from .pod.follow import OffsetReader, check_every_s
from .live import Meter
from .outcome import RunOutcome, record_outcome, settle
from .paths import local_run_dir
from .pod_control import resolve_run, stop_job, stop_pod
from .providers import PodState
from .run import ACTIVE_RUN_STATES, UNSETTLED_RUN_STATES, _message
from .secrets import redact
from .state import RunRecord, RunStatus, State
from .ui import UI


def pick_run(state: State, run_id: str | None) -> RunRecord:
    if run_id is None:
        run = state.latest_run()
        if run is None:
            raise PodtuneError("no runs yet", "start one with: podtune run recipes/tiny-cpu.yaml")
        return run
    run = state.get_run(run_id)
    if run is not None:
        return run
    matches = state.run_ids_like(run_id)
    if len(matches) == 1:
        return state.get_run(matches[0])  # type: ignore[return-value]  # the id was just listed
    if matches:
        raise PodtuneError(f"{run_id!r} matches several runs: {', '.join(matches[:5])}", "give more of the run id")
    raise PodtuneError(f"no run {run_id!r}", "list runs with: podtune runs")


def logs(state: State, ui: UI, run_id: str | None, *, follow: bool, poll_s: float = 1.0,
         timeout_s: float = 14 * 24 * 3600, yes: bool = False, raw: bool = False) -> None:
    """The pod's log, each line once. A stopped pod's log comes from the laptop's copy, else from its volume
    (the pod started briefly, asked unless yes); a pod that stops mid-follow is read to the end the same way.
    Following shows the live view (phase, step, loss, ETA, $) from the run's events; `raw` the trainer's lines."""
    run = pick_run(state, run_id)
    readable = follow and not raw
    _, provider, pod = resolve_run(state, run.id)
    retry = f"podtune logs {run.id}" + (" -f" if follow else "")
    if pod.state != PodState.RUNNING:
        _show_rest_from_volume(state, ui, run, provider, pod, 0, yes=yes, retry=retry, readable=readable)
        return

    def reconnect():
        current = provider.get(pod.id)
        if current is None or current.state != PodState.RUNNING:
            raise PodStopped(f"pod {pod.id} is no longer running")
        return provider.connect(current, timeout_s=120, on_wait=ui.waiting)

    transport = reconnect()
    assert run.remote_dir is not None  # a run on a pod records it before launch
    paths = RunPaths.on_pod(run.remote_dir)
    reader = OffsetReader(transport, str(paths.events if readable else paths.log), 0, reconnect)
    deadline = time.monotonic() + timeout_s
    next_check = time.monotonic() + check_every_s(poll_s)
    ui.live.meter = Meter.for_run(state, run.id)
    try:
        with reader, ui.live.activity() if readable else nullcontext():
            if not follow:
                _show(ui, reader.read_rest(), readable)
                return
            while time.monotonic() < deadline:  # each line as the pod writes it (a stream, not a poll)
                _show(ui, reader.read_new(timeout_s=max(min(next_check, deadline) - time.monotonic(), 0.0)),
                      readable)
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + check_every_s(poll_s)
                    if remote_job.exit_code(reader.transport, run.remote_dir) is not None:
                        _show(ui, reader.read_rest(), readable)  # what it wrote last, to the file's end
                        _say_end(ui, run.id, _remote_outcome(reader.transport, run.remote_dir))
                        return
    except PodtuneError:
        current = provider.get(pod.id)
        if current is not None and current.state == PodState.RUNNING:
            raise
        # The pod stopped (itself, at the end, or from outside) while we followed: the rest is on its volume.
        _show_rest_from_volume(state, ui, run, provider, current or pod, reader.offset, yes=yes, retry=retry,
                               readable=readable)


def _show_rest_from_volume(state: State, ui: UI, run: RunRecord, provider, pod, offset: int, *,
                           yes: bool, retry: str, readable: bool = False) -> None:
    """Print the log from byte `offset` and how the run ended; fetch both from the volume when not copied yet."""
    outcome = settle(state, ui, run.id, provider, pod, yes=yes, retry=retry)
    if state.get_run(run.id).status in UNSETTLED_RUN_STATES:  # type: ignore[union-attr]  # it exists
        record_outcome(state, run.id, outcome)
    local = RunPaths(local_run_dir(run.id))
    copy = local.events if readable else local.log
    if outcome.unknown or not copy.exists():
        raise PodtuneError(
            f"pod {pod.id} is {pod.state.value}: the log from byte {offset} on was not shown; it is on the pod's volume",
            f"fetch it (starts the pod for a minute or two): {retry} --yes")
    if offset == 0:
        ui.warn(f"pod {pod.id} is {pod.state.value}; showing the laptop's copy of its log")
    _show(ui, copy.read_bytes()[offset:], readable)
    _say_end(ui, run.id, outcome)


def _remote_outcome(transport, remote_dir: str) -> RunOutcome:
    from remote.events import parse_event_lines

    try:
        events, _ = parse_event_lines(transport.read_bytes(str(RunPaths.on_pod(remote_dir).events)))
    except FileNotFoundError:
        events = []
    done = next((e for e in reversed(events) if e.get("kind") == EventKind.PIPELINE_DONE), None)
    if done is not None:
        return RunOutcome.from_event(done)
    code = remote_job.exit_code(transport, remote_dir)
    return RunOutcome.from_exit_code(code) if code is not None else RunOutcome(
        ok=False, interrupted=True, error="the job's processes are gone (killed or pod restarted)")


def _say_end(ui: UI, run_id: str, outcome: RunOutcome) -> None:
    if outcome.ok:
        ui.info(f"run {run_id} succeeded")
    else:
        word = "stopped" if outcome.interrupted else "failed"
        where = f" in phase {outcome.phase}" if outcome.phase else ""
        ui.info(f"run {run_id} {word}{where}: {outcome.error or 'no reason recorded'}")


def _show(ui: UI, chunk: bytes, readable: bool) -> None:
    """Events through the live view, or the trainer's lines as they are."""
    if not readable:
        _print(ui, chunk)
        return
    from remote.events import parse_event_lines

    for event in parse_event_lines(chunk)[0]:
        ui.event(event)


def _print(ui: UI, chunk: bytes) -> None:
    for line in chunk.decode("utf-8", "replace").splitlines():
        ui.console.print(redact(line), markup=False, highlight=False, soft_wrap=True)


def status(state: State, ui: UI, run_id: str | None, *, yes: bool = False, show: bool = True) -> dict[str, Any]:
    """One state for the run (never RUNNING for a run that ended), why it ended, progress, last checkpoint,
    cost so far and the next command. A run whose pod stopped with no podtune attached is settled first (its
    outcome fetched from the volume, asked unless yes)."""
    from .costs import run_cost
    from .run_state import FINAL, one_state

    run = pick_run(state, run_id)
    resumable = False
    log_tail: list[str] = []
    info: dict[str, Any] = {"run_id": run.id, "recipe": run.recipe_name, "provider": run.provider,
                            "status": run.status, "phase": run.phase, "pod_id": run.pod_id}
    pod_state = job_alive = exit_code = None
    rents = False
    if run.pod_id is not None and run.remote_dir:
        try:
            _, provider, pod = resolve_run(state, run.id)
            rents = provider.rents
            pod_state = pod.state.value
            if rents:  # an own machine is always "up": its state says nothing about the run
                info["pod_state"] = pod_state
            if pod.state == PodState.RUNNING:
                transport = provider.connect(pod, timeout_s=120, on_wait=ui.waiting)
                try:
                    info["checkpoint"] = _last_checkpoint(transport, run.remote_dir)
                    if run.status not in FINAL:  # an ended run's DB status is final; its job files are history
                        info["remote"] = _remote_status(transport, run.remote_dir)
                        job_alive = info["job_alive"] = remote_job.is_alive(transport, run.remote_dir)
                        exit_code = info["exit_code"] = remote_job.exit_code(transport, run.remote_dir)
                        remote_log = shlex.quote(str(RunPaths.on_pod(run.remote_dir).log))
                        tail = transport.exec(f"tail -n {LOG_TAIL_LINES} {remote_log}", timeout_s=30)
                        log_tail = tail.stdout.splitlines() if tail.rc == 0 else []
                finally:
                    transport.close()
            else:
                if run.status in UNSETTLED_RUN_STATES:
                    outcome = settle(state, ui, run.id, provider, pod, yes=yes, retry=f"podtune status {run.id}")
                    record_outcome(state, run.id, outcome)
                    run = state.get_run(run.id) or run
                    info.update(status=run.status, phase=run.phase)
                resumable = run.status in (RunStatus.STOPPED, RunStatus.FAILED)
        except PodGone as exc:
            pod_state = info["pod_state"] = PodState.TERMINATED.value
            record = state.get_pod(run.pod_id) if run.pod_id else None
            if record is not None and record.status != PodState.TERMINATED:
                state.set_pod_status(record.id, PodState.TERMINATED)  # the laptop's meter stops too
            if run.status in UNSETTLED_RUN_STATES:  # whatever it was doing ended with the pod
                record_outcome(state, run.id, RunOutcome(ok=False, interrupted=True, error=(
                    f"{exc.message}: its volume, with the log and any checkpoints, went with it")))
                run = state.get_run(run.id) or run
                info.update(status=run.status)
        except PodtuneError as exc:
            info["pod_state"] = exc.message
    info.update(_ended_facts(run, log_tail))
    verdict = one_state(run.id, run.recipe_path, run.status, run.message, rents=rents, pod_state=pod_state,
                        job_alive=job_alive, exit_code=exit_code)
    info.update(state=verdict.state, reason=verdict.reason, warning=verdict.warning, next=verdict.next)
    if resumable:
        info["resume"] = info["next"] = f"podtune resume {run.id}"
    runs = state.list_runs(limit=100_000)
    info["cost_usd"] = round(run_cost(state, run, runs, time.time())["total_usd"], 4)
    if show:
        ui.status(info, state.phases(run.id))
    return info


def _remote_status(transport, remote_dir: str) -> dict[str, Any] | None:
    try:
        return json.loads(transport.read_bytes(str(RunPaths.on_pod(remote_dir).status)))
    except (FileNotFoundError, ValueError):
        return None


def _last_checkpoint(transport, remote_dir: str) -> str | None:
    """The newest checkpoint-N on the volume (what a resumed run starts from)."""
    out = transport.exec(f"ls -1 {RunPaths.on_pod(remote_dir).checkpoints} 2>/dev/null", timeout_s=30)
    steps = [int(n.split("-")[1]) for n in out.stdout.split() if n.startswith("checkpoint-") and n[11:].isdigit()]
    return f"checkpoint-{max(steps)}" if steps else None


LOG_TAIL_LINES = 10


def _ended_facts(run: RunRecord, log_tail: list[str]) -> dict[str, Any]:
    """Why a run ended, from the laptop's copies: the error, the job's exit code, the watchdog's reason, the log's
    last lines."""
    local = local_run_dir(run.id)
    files = RunPaths(local)
    facts: dict[str, Any] = {}
    if run.message:
        facts["error"] = run.message
    code = files.exit_code.read_text().strip() if files.exit_code.exists() else ""
    if code.lstrip("-").isdigit() and run.status not in UNSETTLED_RUN_STATES:
        facts["exit_code"] = int(code)
    from remote.events import read_events

    from .pod.retrieve import launch_events

    events, _ = read_events(files.events)
    guard = next((e for e in reversed(launch_events(local)) if e.get("kind") == EventKind.WATCHDOG_STOP), None)
    if guard is not None:
        facts["stopped_by_watchdog"] = f"{guard.get('reason')} ({guard.get('detail') or ''}, limit {guard.get('limit')})"
    checkpoints = [e.get("checkpoint") for e in events if e.get("kind") == EventKind.RESUMED]
    last = next((e for e in reversed(events) if e.get("kind") == EventKind.STEP), None)
    if last is not None:
        facts["last_step"] = f"{last.get('step')}/{last.get('total_steps')}"
    if checkpoints:
        facts["resumed_from"] = checkpoints[-1]
    if not log_tail and run.status not in ACTIVE_RUN_STATES and files.log.exists():
        log_tail = files.log.read_text(encoding="utf-8", errors="replace").splitlines()[-LOG_TAIL_LINES:]
    if log_tail:
        facts["log_tail"] = [redact(line) for line in log_tail]
    return facts


def stop_pod_by_id(state: State, ui: UI, pod_id: str, *, terminate: bool, yes: bool) -> None:
    """Stop or terminate a pod podtune rented, whichever run it served (costs lists these for stopped volumes)."""
    record = state.get_pod(pod_id)
    if record is None:
        raise PodtuneError(f"podtune never rented a pod {pod_id!r}", "see `podtune costs` for the pods it knows")
    runs = [r for r in state.list_runs(1000) if r.pod_id == pod_id]
    if runs:
        stop(state, ui, runs[0].id, terminate=terminate, yes=yes)
        return
    raise PodtuneError(f"pod {pod_id} has no run on record", f"stop it in the {record.provider} console")


def stop(state: State, ui: UI, run_id: str | None, *, terminate: bool, yes: bool) -> None:
    run = pick_run(state, run_id)
    if run.pod_id is None:
        state.update_run(run.id, status=RunStatus.STOPPED, ended_at=time.time())
        ui.info(f"run {run.id} never reached a pod; marked stopped")
        return
    _, provider, pod = resolve_run(state, run.id)
    if pod.state == PodState.RUNNING and run.remote_dir:
        try:
            _stop_job(ui, provider, pod, run.remote_dir)
        except KeyboardInterrupt:
            stop_pod(state, provider, pod.id)  # Ctrl-C during a hung SSH must still end the billing
            raise
        except Exception as exc:  # noqa: BLE001 - a changed host key, a dead sshd, a timeout: the pod is stopped below
            ui.warn(f"could not stop the job over SSH ({_message(exc)}); stopping pod {pod.id} through "
                    f"{provider.name} anyway")
    if terminate:
        if not yes and not ui.confirm(f"Terminate pod {pod.id}? Its volume (cached weights, checkpoints) is deleted."):
            raise PodtuneError("not terminated", "add --yes to terminate without asking")
        provider.terminate(pod.id)
        state.set_pod_status(pod.id, PodState.TERMINATED)
        ui.info(f"pod {pod.id} terminated; nothing bills any more")
    else:
        stop_pod(state, provider, pod.id)
        record = state.get_pod(pod.id)
        per_day = (record.storage_per_hr if record else 0.0) * 24
        ui.info(f"pod {pod.id} stopped; its volume is kept (${per_day:.3f}/day). "
                f"Delete it with: podtune stop {run.id} --terminate")
    if run.status in ACTIVE_RUN_STATES:
        state.update_run(run.id, status=RunStatus.STOPPED, ended_at=time.time(), message="stopped by podtune stop")


def _stop_job(ui: UI, provider, pod, remote_dir: str) -> None:
    """End the job's processes. Their end lets the pod's watchdog stop the pod itself, which can close this
    connection mid-way: the pod is stopped through the provider next in any case."""
    transport = provider.connect(pod, timeout_s=120, on_wait=ui.waiting)
    try:
        stopped = stop_job(transport, pod, remote_dir)
        ui.info(f"stopped the job's processes ({', '.join(stopped) or 'none were running'})")
    except SSHError as exc:
        current = provider.get(pod.id)
        if current is not None and current.state != PodState.RUNNING:
            ui.info(f"the job ended and pod {pod.id} stopped itself")
        else:
            ui.warn(f"lost the connection while stopping the job ({exc.message}); stopping the pod anyway")
    finally:
        transport.close()


def ssh_command(state: State, ui: UI, run_id: str | None, command: list[str]) -> list[str]:
    """The `ssh` argv that opens a shell (or runs `command`) on the run's pod, host key pinned as podtune pinned it."""
    from .paths import known_hosts_path
    from .pod.ssh_transport import HostKeyStore, SSHTransport

    run = pick_run(state, run_id)
    _, provider, pod = resolve_run(state, run.id)
    if pod.state != PodState.RUNNING:
        raise PodtuneError(f"pod {pod.id} is {pod.state.value}", f"restart it first, e.g. with: podtune push {run.id}")
    transport = provider.connect(pod, timeout_s=120, on_wait=ui.waiting)  # also pins the key on first contact
    if not isinstance(transport, SSHTransport):
        raise PodtuneError(f"run {run.id} runs on this machine ({run.provider} provider): there is nothing to ssh into",
                           f"its files are under {pod.workspace}")
    transport.close()
    pinned = local_run_dir(run.id) / "known_hosts"
    pinned.write_text("\n".join(HostKeyStore(known_hosts_path()).openssh_lines(pod.id, transport.host, transport.port)) + "\n")
    return ssh_argv(transport.key_path, transport.port, pinned, transport.user, transport.host, command)


def ssh_argv(key_path: Path, port: int, known_hosts: Path, user: str, host: str, command: list[str]) -> list[str]:
    """`--` ends ssh's options: a user or host from a recipe can never be read as one (`-oProxyCommand=...`)."""
    return ["ssh", "-i", str(key_path), "-p", str(port), "-o", f"UserKnownHostsFile={known_hosts}",
            "-o", "StrictHostKeyChecking=yes", "--", f"{user}@{host}", *command]



