"""A run's pod from any podtune command: find it, end the job's processes on it, stop it through its provider.

`podtune stop/status/logs/ssh` act on a run's pod without the phase machine (run.py), which uses these too.
"""

from __future__ import annotations

from pathlib import Path

from remote.events import WorkspacePaths

from .errors import PodGone, PodtuneError
from .pod import remote_job
from .pod.pod_secrets import remove_token
from .pod.transport import Transport
from .providers import Pod, PodState, Provider, get_provider
from .state import RunRecord, State


def resolve_run(state: State, run_id: str, provider: Provider | None = None) -> tuple[RunRecord, Provider, Pod]:
    """The run's record, its provider (built from the run's recipe unless given) and its pod as the provider sees it now."""
    from .run import load_recipe_or_fail

    run = state.get_run(run_id)
    if run is None:
        raise PodtuneError(f"no run {run_id!r}", "list runs with: podtune runs")
    if provider is None:
        provider = get_provider(run.provider, load_recipe_or_fail(Path(run.recipe_path)))
    if run.pod_id is None or run.remote_dir is None:
        raise PodtuneError(f"run {run_id} never reached a pod (status {run.status})")
    pod = provider.get(run.pod_id)
    if pod is None:
        raise PodGone(f"pod {run.pod_id} of run {run_id} no longer exists (terminated)")
    return run, provider, pod


def stop_pod(state: State, provider: Provider, pod_id: str) -> None:
    """The provider's stop is what ends the billing; the state DB's meter stops with it."""
    provider.stop(pod_id)
    state.set_pod_status(pod_id, PodState.STOPPED)


def stop_job(transport: Transport, pod: Pod, remote_dir: str) -> list[str]:
    """Remove the token, then end the job's process groups; returns which ones were running.

    The token goes first: the job's end lets the pod's watchdog stop the pod, which can close this connection."""
    remove_token(transport, WorkspacePaths.on_pod(pod.workspace), Path(remote_dir).name)
    return remote_job.kill(transport, remote_dir)
