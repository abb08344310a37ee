"""The phase machine of one run: plan, provision, connect, sync, setup, launch, follow, stop, report.

Every step is recorded in the state DB before it can fail, so any later `podtune` can re-attach, stop or cost it.
Nothing here knows which provider it drives; what differs lives behind providers/base.py.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from remote.events import (EXIT_CODE, PIPELINE_PHASES, REPORT, TRAIN_LOG, WATCHDOG_STATUS, EventKind, Phase, RunInfo,
                           RunPaths, read_events)
from remote.recipe import Recipe, RecipeError, dump_recipe, load_recipe
from remote.requirements import for_recipe

from . import __version__, remote_job, retrieve
from .datafiles import check_fits_recipe, given_data_file, recipe_data_files, with_data
from .errors import CapacityError, ConfigError, PodGone, PodStopped, PodtuneError, RemoteJobError
from .follow import CONNECTION_ERRORS, EventFollower, OffsetReader
from .live import Meter
from .paths import REPO_ROOT, local_run_dir
from .pod_secrets import (WANDB_KEY, all_secret_paths, deliver_secret, deliver_token, remove_token,
                          remove_token_quietly, secret_paths, token_paths)
from .pod_setup import prepare
from .providers import Pod, PodSpec, PodState, Provider, get_provider
from .remote_job import PodLayout
from .secrets import hf_token, redact, wandb_api_key
from .ssh_keys import ensure_keypair
from .state import PodRecord, RunRecord, RunStatus, State
from .sync import FileEntry, entry, sync, tree_entries
from .transport import Transport
from .ui import UI


ACTIVE_RUN_STATES = (RunStatus.PROVISIONING, RunStatus.RUNNING, RunStatus.DETACHED)  # may still be using its pod
UNSETTLED_RUN_STATES = (*ACTIVE_RUN_STATES, RunStatus.ENDED)  # ENDED: its pod stopped, how it ended is on the volume


@dataclass
class RunOptions:
    provider: str | None = None
    data: Path | None = None  # a data file the user names on the command line (a recipe may not reach outside)
    yes: bool = False
    detach: bool = False
    connect_timeout_s: float = 600.0
    poll_s: float = 0.2  # how often the follower reads events.jsonl: the run ends (and the pod stops) this soon after
    raw: bool = False  # follow the trainer's own log lines instead of the live view


def load_recipe_or_fail(path: Path) -> Recipe:
    try:
        return load_recipe(path)
    except RecipeError as exc:
        if [p for p, _ in exc.problems] == ["(file)"]:  # no file to fix fields in: the path is what is wrong
            shipped = sorted(p.name for p in (REPO_ROOT / "recipes").glob("*.yaml"))
            raise ConfigError(str(exc), "check the path (relative to where you run podtune); shipped recipes: "
                              + ", ".join(f"recipes/{n}" for n in shipped)) from None
        raise ConfigError(str(exc), "fix the fields above; `podtune schema` lists every field") from None


def local_data_files(recipe: Recipe, recipe_path: Path) -> list[Path]:
    """The recipe's local data files, each checked against the recipe (before renting, not on the pod)."""
    files = recipe_data_files(recipe, recipe_path)
    for path in files:
        check_fits_recipe(recipe, path)
    return files


def resolve_data(recipe: Recipe, recipe_path: Path, data: Path | None) -> tuple[Recipe, list[Path]]:
    """The recipe as the pod gets it and the laptop data files to upload: --data wins over the recipe's source."""
    if data is None:
        return recipe, local_data_files(recipe, recipe_path)
    given = given_data_file(data)
    recipe = with_data(recipe, given)
    check_fits_recipe(recipe, given)
    return recipe, [given]


def expect_new_host_key(pod_id: str, expected: bool = True) -> None:
    """Before podtune resumes a pod: its image may make new SSH host keys on start (stock RunPod images do)."""
    from .host_keys import HostKeyStore
    from .paths import known_hosts_path

    store = HostKeyStore(known_hosts_path())
    if expected:
        store.expect_new_key(pod_id, "podtune resumed this pod, and RunPod images make new host keys on every start")
    else:
        store.clear_expectation(pod_id)


def new_run_id(state: State, recipe_name: str) -> str:
    base = f"{recipe_name}-{datetime.now().strftime('%Y%m%d-%H%M')}"
    taken = set(state.run_ids_like(base))
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


def pod_spec(recipe: Recipe, gpu_types: tuple[str, ...]) -> PodSpec:
    c = recipe.compute
    return PodSpec(
        name=f"podtune-{recipe.name}", recipe_name=recipe.name, gpu_types=gpu_types, gpu_count=c.gpu_count,
        volume_gb=c.volume_gb, container_disk_gb=c.container_disk_gb, image=c.image,
        public_key=ensure_keypair()[1], cloud=c.cloud,
    )


class Runner:
    def __init__(self, state: State, ui: UI):
        self.state = state
        self.ui = ui

    # ---- the whole chain ----------------------------------------------------------------------------------
    def run(self, recipe_path: Path, opts: RunOptions) -> str:
        recipe, data_files = resolve_data(load_recipe_or_fail(recipe_path), recipe_path, opts.data)
        provider_name = opts.provider or recipe.compute.provider
        from .credentials import require

        require(recipe, provider_name)
        provider = get_provider(provider_name, recipe)
        token = hf_token()
        from .plan import make_plan

        plan = make_plan(recipe, provider, data_files=data_files, token=token, say=self.ui.info)
        self.ui.plan(plan)
        if not opts.yes and plan.needs_confirmation:
            if not self.ui.can_ask:
                raise PodtuneError(
                    f"cancelled before renting anything: this run rents {plan.gpu_type} at ${plan.usd_per_hour:.3f}/h "
                    f"(about ${plan.estimated_usd:.2f}) and there is no terminal to ask",
                    f"review `podtune plan {recipe_path}`; `podtune run --yes {recipe_path}` rents without asking")
            if not self.ui.confirm(plan.confirmation_question()):
                raise PodtuneError("cancelled before renting anything",
                                   f"review `podtune plan {recipe_path}`; `podtune run --yes` rents without asking")

        run_id = new_run_id(self.state, recipe.name)
        self.state.add_run(RunRecord(
            id=run_id, recipe_name=recipe.name, recipe_path=str(recipe_path.resolve()), provider=provider.name,
            status=RunStatus.PROVISIONING, created_at=time.time(), estimate=plan.as_dict(),
        ))
        self.state.phase_started(run_id, Phase.PLAN, plan.started_at)
        self.state.phase_ended(run_id, Phase.PLAN)
        self.ui.info(f"run {run_id}")
        pod: Pod | None = None
        try:
            with self.phase(run_id, Phase.PROVISION):
                pod = self.provision(run_id, recipe, provider, plan.gpu_types)
            with self.phase(run_id, Phase.CONNECT):
                transport = self.connect(provider, pod, opts.connect_timeout_s)
            layout = PodLayout(pod.workspace)
            self.state.update_run(run_id, remote_dir=layout.run_dir(run_id))
            with self.phase(run_id, Phase.SYNC):
                sent = self.upload(transport, pod, layout, run_id, recipe, data_files)
                self.ui.info(f"synced: {len(sent.uploaded)} file(s) uploaded, {sent.unchanged} unchanged")
            with self.phase(run_id, Phase.SETUP):
                ready = prepare(transport, layout, pod.python, for_recipe(recipe),
                                on_line=lambda line: self.ui.info(f"  setup: {line}"))
                self.ui.info(f"python on the pod: {ready.python}" + (
                    f" (new venv: {ready.seconds:.0f} s, {ready.downloaded_bytes / 1e6:,.0f} MB downloaded)"
                    if ready.created else ""))
            needs_token = bool(token and (recipe.output.hub_repo or not recipe.model.is_builtin))
            self.launch(transport, provider, pod, layout, run_id, recipe, ready.python, token if needs_token else None,
                        wandb_key=tracker_key(recipe))
        except BaseException as exc:
            self.state.update_run(run_id, status=RunStatus.FAILED, ended_at=time.time(), message=_message(exc))
            if pod is not None:
                # Nothing runs on the pod yet, so nothing there would stop it: a failure or Ctrl-C before the
                # launch must not leave it billing.
                self.stop_unlaunched(provider, pod.id, exc)
            raise
        if opts.detach:
            self.state.update_run(run_id, status=RunStatus.DETACHED)
            self.ui.detached(run_id)
            return run_id
        self.attach(run_id, opts, transport=transport, provider=provider)
        return run_id

    @contextmanager
    def phase(self, run_id: str, name: Phase) -> Iterator[None]:
        self.state.phase_started(run_id, name)
        self.ui.phase(name)
        self.ui.live.meter = Meter.for_run(self.state, run_id)
        try:
            with self.ui.live.activity(name):  # a spinner with the elapsed time: no phase is ever silent
                yield
        except BaseException:
            self.state.phase_ended(run_id, name, ok=False)
            raise
        self.state.phase_ended(run_id, name, ok=True)
        done = self.ui.live.end(name)
        if done:
            self.ui.say(done, style="dim")

    # ---- steps --------------------------------------------------------------------------------------------
    def busy_with(self, pod_id: str, run_id: str) -> str | None:
        """Another run of this laptop that is still using the pod (a pod never carries two runs at once)."""
        return next((r.id for r in self.state.list_runs(limit=1000) if r.pod_id == pod_id and r.id != run_id
                     and r.status in ACTIVE_RUN_STATES), None)

    def provision(self, run_id: str, recipe: Recipe, provider: Provider, gpu_types: tuple[str, ...]) -> Pod:
        spec = pod_spec(recipe, gpu_types)
        existing = provider.find(spec.name)
        suffix = 2
        while (existing is not None and existing.state in (PodState.RUNNING, PodState.PENDING) and suffix < 100
               and (other := self.busy_with(existing.id, run_id))):
            # Sharing a pod would let one run stop the other's and count its GPU time twice: rent another one.
            self.ui.info(f"pod {existing.id} is busy with run {other}: using another pod for this run")
            spec = replace(spec, name=f"podtune-{recipe.name}-{suffix}")
            existing, suffix = provider.find(spec.name), suffix + 1
        pod: Pod
        if existing is not None and existing.state in (PodState.RUNNING, PodState.PENDING):
            pod = existing  # PENDING: an earlier podtune rented it and was killed while it booted
            self.ui.info(f"reusing {'running' if pod.state == PodState.RUNNING else 'starting'} pod {pod.id}")
        elif existing is not None and existing.state in (PodState.STOPPED, PodState.ERROR):
            try:
                expect_new_host_key(existing.id)
                pod = provider.start(existing.id)
                self.ui.info(f"resumed stopped pod {pod.id} (its volume and caches are warm)")
            except CapacityError as exc:
                expect_new_host_key(existing.id, expected=False)  # it did not start: no new key to expect
                self.ui.warn(
                    f"pod {existing.id} cannot resume: {exc.message}. Renting a new pod (cold cache). The old volume "
                    f"still bills storage until you run: podtune stop --pod {existing.id} --terminate"
                )
                pod = provider.create(spec)
        else:
            pod = provider.create(spec)
            self.ui.info(f"rented pod {pod.id}: {pod.gpu_count}x {pod.gpu_type} at ${pod.cost_per_hr:.3f}/h")
        # Recorded before any wait, so no pod is ever billed without podtune knowing about it.
        self.state.upsert_pod(PodRecord(
            id=pod.id, provider=pod.provider, name=pod.name, status=pod.state, created_at=time.time(),
            recipe_name=recipe.name, gpu_type=pod.gpu_type, gpu_count=pod.gpu_count, cost_per_hr=pod.cost_per_hr,
            storage_per_hr=pod.storage_per_hr, volume_gb=pod.volume_gb,
            spec={"image": recipe.compute.image, "volume_gb": recipe.compute.volume_gb},
        ))
        self.state.set_pod_status(pod.id, PodState.RUNNING)
        self.state.update_run(run_id, pod_id=pod.id)
        return pod

    def connect(self, provider: Provider, pod: Pod, timeout_s: float) -> Transport:
        transport = provider.connect(pod, timeout_s=timeout_s, on_wait=self.ui.waiting)
        notice = getattr(transport, "host_key_notice", None)
        if notice:
            self.ui.warn(notice)
        first = getattr(transport, "host_key_first_contact", None)
        if first:
            self.ui.info(f"pinned the SSH host key of pod {pod.id} on first contact: {first} "
                         "(a RunPod pod's log lists its host keys, to compare)")
        return transport

    def upload(self, transport: Transport, pod: Pod, layout: PodLayout, run_id: str, recipe: Recipe,
               data_files: list[Path]):
        """Sync code and data (content-addressed, so a re-run sends nothing), then lay out the run directory."""
        paths = layout.run_paths(run_id)
        recipe_text = dump_recipe(recipe)
        RunPaths(local_run_dir(run_id)).recipe.write_text(recipe_text, encoding="utf-8")
        entries: list[FileEntry] = tree_entries(REPO_ROOT / "remote", f"{layout.code}/remote")
        entries.append(entry(REPO_ROOT / "pyproject.toml", f"{layout.code}/pyproject.toml"))
        entries.append(entry(REPO_ROOT / "constraints.txt", layout.constraints))
        data = [entry(path, "") for path in data_files]
        data = [replace(d, remote=f"{layout.code}/data/{d.sha256[:16]}-{d.local.name}") for d in data]
        result = sync(transport, pod.python, entries + data)
        links = " && ".join(
            f"ln -f {shlex.quote(d.remote)} {shlex.quote(str(paths.data / d.local.name))}" for d in data
        )
        transport.exec(f"mkdir -p {shlex.quote(str(paths.data))}" + (f" && {links}" if links else ""),
                       timeout_s=60).check("preparing the run directory")
        transport.write_bytes(str(paths.recipe), recipe_text.encode())
        return result

    def launch(self, transport: Transport, provider: Provider, pod: Pod, layout: PodLayout, run_id: str,
               recipe: Recipe, python: str, token: str | None, phases: str = ",".join(PIPELINE_PHASES),
               wandb_key: str | None = None) -> None:
        paths = layout.run_paths(run_id)
        info = RunInfo(
            run_id=run_id, recipe=recipe.name, provider=provider.name, pod_id=pod.id,
            gpu_type=pod.gpu_type, gpu_count=pod.gpu_count, usd_per_hour=pod.cost_per_hr,
            storage_usd_per_hour=pod.storage_per_hr, max_hours=recipe.compute.max_hours,
            max_usd=recipe.compute.max_usd, stall_minutes=recipe.compute.stall_minutes,
            idle_after_finish_s=recipe.compute.idle_after_finish_s,
            self_stop_command=provider.self_stop_command(pod), launched_at=time.time(),
            billed_since=self._billed_since(pod.id), podtune_version=__version__,
            # The watchdog deletes these at every exit (the volume outlives the work).
            secret_files=tuple((token_paths(layout, run_id) if token else [])
                               + (secret_paths(layout, run_id, WANDB_KEY) if wandb_key else [])),
        )
        try:
            transport.write_bytes(str(paths.run_info), info.to_json().encode())
            size = transport.exec(f"wc -c 2>/dev/null < {shlex.quote(str(paths.events))} || echo 0", timeout_s=30)
            retrieve.mark_launch(local_run_dir(run_id), int(size.stdout.strip()) if size.stdout.strip().isdigit() else 0)
            # The only way the token reaches the pod: a 0600 file over the encrypted channel (pod_secrets.py).
            token_file = deliver_token(transport, python, layout, run_id, token) if token else None
            # The W&B key travels the same way; only the trainer reads it, in memory (never its environment).
            key_file = deliver_secret(transport, python, layout, run_id, wandb_key, WANDB_KEY) if wandb_key else None
            remote_job.launch(transport, layout, run_id, python, token_file=token_file, phases=phases,
                              wandb_key_file=key_file)
        except BaseException:
            # No job runs that would remove it: a failed or interrupted launch must not leave the token behind.
            if token or wandb_key:
                problem = remove_token_quietly(transport, layout, run_id)
                if problem:
                    self.ui.warn(f"could not remove the Hub token from the pod ({problem}); it is in one of "
                                 f"{', '.join(all_secret_paths(layout, run_id))}")
            raise
        self.state.update_run(run_id, status=RunStatus.RUNNING)
        self.ui.info("training started on the pod (detached: Ctrl-C here leaves it running)")

    def push_again(self, run_id: str, opts: RunOptions) -> dict[str, Any]:
        """Retry the push of a finished run: restart its pod if stopped, push from the volume, stop it again."""
        run, provider, pod = self.resolve(run_id)
        recipe = load_recipe_or_fail(Path(run.recipe_path))
        if not recipe.output.hub_repo:
            raise ConfigError(f"run {run_id} has no output.hub_repo in its recipe", "set output.hub_repo and run again")
        token = hf_token()
        if not token:
            raise PodtuneError("no Hub token found", "set HF_TOKEN or run `hf auth login` (a write token)")
        from .plan import check_hub

        check_hub(recipe, token)
        if pod.state == PodState.STOPPED:
            with self.phase(run_id, Phase.PROVISION):
                expect_new_host_key(pod.id)
                pod = provider.start(pod.id)
                self.state.set_pod_status(pod.id, PodState.RUNNING)
                self.ui.info(f"restarted pod {pod.id} to push from its volume")
        try:
            with self.phase(run_id, Phase.CONNECT):
                transport = self.connect(provider, pod, opts.connect_timeout_s)
            layout = PodLayout(pod.workspace)
            with self.phase(run_id, Phase.SETUP):
                ready = prepare(transport, layout, pod.python, for_recipe(recipe))
            self.launch(transport, provider, pod, layout, run_id, recipe, ready.python, token, phases=Phase.PUSH)
        except BaseException as exc:
            self.stop_unlaunched(provider, pod.id, exc)
            raise
        return self.attach(run_id, opts, transport=transport, provider=provider)

    def resume(self, run_id: str, opts: RunOptions) -> dict[str, Any]:
        """Continue a stopped or failed run on its pod: restart it, relaunch; training goes on from the last
        checkpoint on the volume to the same final step, phases already done are skipped, then stop as usual."""
        run, provider, pod = self.resolve(run_id)
        if run.status == RunStatus.SUCCEEDED:
            raise PodtuneError(f"run {run_id} already succeeded", f"push it again if needed: podtune push {run_id}")
        if run.status in ACTIVE_RUN_STATES and pod.state == PodState.RUNNING:
            raise PodtuneError(f"run {run_id} is still {run.status} on pod {pod.id}", f"follow it: podtune attach {run_id}")
        if other := self.busy_with(pod.id, run_id):
            raise PodtuneError(f"pod {pod.id} is busy with run {other}", f"wait for it, or stop it: podtune stop {other}")
        copy = RunPaths(local_run_dir(run_id)).recipe  # the recipe as launched, whatever the file says now
        recipe = load_recipe_or_fail(copy if copy.exists() else Path(run.recipe_path))
        record = self.state.get_pod(pod.id)
        rate = record.cost_per_hr if record else pod.cost_per_hr
        question = f"Resume run {run_id} on pod {pod.id} (${rate:.3f}/h) from its last checkpoint?"
        if not opts.yes and not self.ui.confirm(question):
            raise PodtuneError("not resumed", f"podtune resume {run_id} --yes resumes without asking")
        token = hf_token()
        self.state.update_run(run_id, status=RunStatus.PROVISIONING, ended_at=None, message=None)
        try:
            if pod.state != PodState.RUNNING:
                with self.phase(run_id, Phase.PROVISION):
                    try:
                        pod = provider.start(pod.id)
                    except CapacityError as exc:
                        raise PodtuneError(
                            f"pod {pod.id} cannot start now: {exc.message}. Its checkpoints stay on its volume",
                            f"try again later: podtune resume {run_id}") from None
                    self.state.set_pod_status(pod.id, PodState.RUNNING)
                    self.ui.info(f"restarted pod {pod.id}; its volume holds the run's checkpoints")
            with self.phase(run_id, Phase.CONNECT):
                transport = self.connect(provider, pod, opts.connect_timeout_s)
            layout = PodLayout(pod.workspace)
            with self.phase(run_id, Phase.SYNC):
                self.upload(transport, pod, layout, run_id, recipe, [])  # code only: the data is on the volume
            with self.phase(run_id, Phase.SETUP):
                ready = prepare(transport, layout, pod.python)
            needs_token = bool(token and (recipe.output.hub_repo or not recipe.model.is_builtin))
            self.launch(transport, provider, pod, layout, run_id, recipe, ready.python, token if needs_token else None,
                        wandb_key=tracker_key(recipe))
        except BaseException as exc:
            self.state.update_run(run_id, status=RunStatus.FAILED, ended_at=time.time(), message=_message(exc))
            self.stop_unlaunched(provider, pod.id, exc)
            raise
        self.ui.info(f"resumed run {run_id}: training goes on from the last checkpoint on the volume")
        return self.attach(run_id, opts, transport=transport, provider=provider)

    def _billed_since(self, pod_id: str) -> float:
        intervals = self.state.pod_intervals(pod_id)
        if intervals and intervals[-1][1] is None:
            return intervals[-1][0]
        return time.time()

    # ---- following, finishing -----------------------------------------------------------------------------
    def attach(self, run_id: str, opts: RunOptions, *, transport: Transport | None = None,
               provider: Provider | None = None) -> dict[str, Any]:
        run, provider, pod = self.resolve(run_id, provider)
        if pod.state != PodState.RUNNING:
            outcome = self.settle(run_id, provider, pod, yes=opts.yes, retry=f"podtune attach {run_id}", show=True)
            return self.finish(run_id, None, provider, pod, outcome)

        def reconnect() -> Transport:
            current = provider.get(pod.id)
            if current is None or current.state != PodState.RUNNING:
                raise PodStopped(f"pod {pod.id} is no longer running")
            return self.connect(provider, current, opts.connect_timeout_s)

        transport = transport or self.connect(provider, pod, opts.connect_timeout_s)
        assert run.remote_dir is not None  # recorded at launch, before anything is followed
        warm = _PlotsWarmUp()
        follower = EventFollower(
            transport=transport, reconnect=reconnect, run_dir=run.remote_dir, offset=run.events_offset,
            local_copy=RunPaths(local_run_dir(run_id)).events,
        )
        raw = OffsetReader(follower.transport, str(RunPaths.on_pod(run.remote_dir).log)) if opts.raw else None

        def show_raw() -> None:
            if raw is None:
                return
            raw.transport = follower.transport  # the follower reconnects; this reader rides on its connection
            try:
                chunk = raw.read_new()
            except CONNECTION_ERRORS:
                return
            for line in chunk.decode("utf-8", "replace").splitlines():  # as written: long lines are not wrapped
                self.ui.console.print(redact(line), markup=False, highlight=False, soft_wrap=True)

        def on_event(event: dict[str, Any]) -> None:
            if event.get("kind") == EventKind.STEP:
                warm.start()
            elif event.get("kind") == EventKind.TRAIN_DONE:  # the curve is whole: drawn while the pod merges
                from .report import LossPlotAhead

                LossPlotAhead.start(run_id, local_run_dir(run_id))
            self.on_event(run_id, event, show=raw is None)

        self.ui.live.meter = Meter.for_run(self.state, run_id)
        try:
            with self.ui.live.activity() if raw is None else nullcontext():
                outcome = follower.follow(
                    on_event=on_event, poll_s=opts.poll_s,
                    on_offset=lambda off: self.state.update_run(run_id, events_offset=off), on_poll=show_raw,
                )
            show_raw()  # the last lines, written after the last event
        except KeyboardInterrupt:
            self.state.update_run(run_id, status=RunStatus.DETACHED)
            self.ui.detached(run_id)
            return {}
        except PodStopped:
            pod = provider.get(pod.id) or pod
            outcome = self.settle(run_id, provider, pod, yes=opts.yes, retry=f"podtune attach {run_id}", show=True)
            return self.finish(run_id, None, provider, pod, outcome)
        return self.finish(run_id, follower.transport, provider, pod, outcome)

    def settle(self, run_id: str, provider: Provider, pod: Pod, *, yes: bool, retry: str,
               show: bool = False) -> dict[str, Any]:
        """How a run whose pod is no longer running ended. From the laptop's copy when it has the end; else fetched
        from the pod's volume by starting the pod briefly (asked, with the price, unless yes). The phases and the
        pod's billed time are then corrected from the pod's own events."""
        run = self.state.get_run(run_id)
        assert run is not None
        local = local_run_dir(run_id)
        if retrieve.has_end(local) or pod.state != PodState.STOPPED or not run.remote_dir:
            return self._stopped_outcome(run_id, pod)
        record = self.state.get_pod(pod.id)
        intervals = self.state.pod_intervals(pod.id)
        last = intervals[-1] if intervals else None  # the run's interval, open or closed when first seen stopped
        self.state.set_pod_status(pod.id, PodState.STOPPED)  # it is stopped now; when it stopped is learnt below

        def started(p: Pod) -> None:
            self.state.set_pod_status(p.id, PodState.RUNNING)
            self.ui.info(f"started pod {p.id} to fetch run {run_id}'s log and outcome from its volume")

        try:
            with retrieve.briefly_started(
                provider, pod, cost_per_hr=record.cost_per_hr if record else pod.cost_per_hr,
                confirm=(lambda _q: True) if yes else self.ui.confirm, what=f"run {run_id}'s log and outcome",
                retry=retry, on_start=started, on_stop=lambda at: self.state.set_pod_status(pod.id, PodState.STOPPED, at),
                on_wait=self.ui.waiting,
            ) as transport:
                got = retrieve.fetch_files(transport, run.remote_dir, local)
                got += [tree for tree in retrieve.TREES if retrieve.fetch_tree(transport, run.remote_dir, local, tree)]
        except PodtuneError as exc:
            self.ui.warn(f"{exc.message}. {exc.hint or ''}".strip())
            return {"ok": False, "unknown": True, "phase": run.phase,
                    "error": f"pod {pod.id} stopped with no podtune attached; the run's outcome and log are on its "
                             f"volume ({retry} --yes fetches them)"}
        self.ui.info(f"fetched {', '.join(got) or 'nothing'} from pod {pod.id} and stopped it again")
        events, end = read_events(RunPaths(local).events, run.events_offset)
        for event in events:
            self.on_event(run_id, event, show=show)
        self.state.update_run(run_id, events_offset=end)
        at = retrieve.stopped_at(retrieve.launch_events(local))
        if last is not None and at is not None and last[0] <= at and (last[1] is None or last[1] > at):
            self.state.correct_interval_end(pod.id, last[0], at)
        return self._stopped_outcome(run_id, pod)

    def _stopped_outcome(self, run_id: str, pod: Pod) -> dict[str, Any]:
        """What ended a run whose pod stopped while nobody watched: the last events the laptop has."""
        events = retrieve.launch_events(local_run_dir(run_id))
        done = next((e for e in reversed(events) if e.get("kind") == EventKind.PIPELINE_DONE), None)
        guard = next((e for e in reversed(events) if e.get("kind") == EventKind.WATCHDOG_STOP), None)
        if done is not None and (done.get("ok") or guard is None):
            return done
        open_phases = [e.get("phase") for e in events if e.get("kind") == EventKind.PHASE_START]
        phase = open_phases[-1] if open_phases else None
        if guard is not None:
            detail = f": {guard['detail']}" if guard.get("detail") else ""
            why = f"the pod's watchdog stopped it ({guard.get('reason')}{detail})"
        else:
            why = f"pod {pod.id} stopped before the job ended (stopped from outside podtune?)"
        return {"ok": False, "interrupted": True, "error": why, "phase": phase}

    def on_event(self, run_id: str, event: dict[str, Any], show: bool = True) -> None:
        kind = event.get("kind")
        if kind == EventKind.PHASE_START:
            self.state.phase_started(run_id, event["phase"], event.get("ts"))
        elif kind == EventKind.PHASE_END:
            self.state.phase_ended(run_id, event["phase"], bool(event.get("ok", True)), event.get("ts"))
        if show:
            self.ui.event(event)

    def finish(self, run_id: str, transport: Transport | None, provider: Provider, pod: Pod,
               outcome: dict[str, Any]) -> dict[str, Any]:
        run = self.state.get_run(run_id)
        assert run is not None and run.remote_dir
        local = local_run_dir(run_id)
        # The pipeline said it is done: its report and log are final, so the bill stops now, not after its
        # interpreter has torn down (the pod's stop ends every process on it anyway).
        work_done = outcome.get("kind") == EventKind.PIPELINE_DONE
        with self.phase(run_id, Phase.STOP):
            try:
                if transport is not None:
                    self._collect(transport, run.remote_dir, local)
                    if work_done:
                        remove_token(transport, PodLayout(pod.workspace), Path(run.remote_dir).name)
                    else:
                        self.stop_run_processes(transport, pod, run.remote_dir)
            except (PodtuneError, OSError) as exc:
                self.ui.warn(f"could not end the job over SSH ({_message(exc)}); stopping pod {pod.id} anyway")
            finally:
                self.stop_pod(provider, pod.id)  # whatever SSH did: the provider's stop is what ends the billing
            if work_done and transport is not None and not getattr(provider, "rents", True):
                # The user's own machine stays up after the stop: what is left of the job ends here.
                try:
                    remote_job.kill(transport, run.remote_dir)
                except (PodtuneError, OSError) as exc:
                    self.ui.warn(f"could not end the job's processes over SSH ({_message(exc)})")
        ok = bool(outcome.get("ok"))
        status, summary = self.record_outcome(run_id, outcome)
        self.ui.report(summary)
        if not ok:
            raise RemoteJobError(
                f"run {run_id} {status} in phase {outcome.get('phase') or run.phase}: {outcome.get('error') or ''}".strip(),
                f"see the pod's log: podtune logs {run_id}"
                + (f"; continue from its last checkpoint: podtune resume {run_id}" if status == RunStatus.STOPPED else ""),
            )
        return summary

    def record_outcome(self, run_id: str, outcome: dict[str, Any]) -> tuple[RunStatus, dict[str, Any]]:
        """The run's final status, message and summary, in the state DB and beside its local files."""
        from .report import add_loss_plot, build_summary

        ok = bool(outcome.get("ok"))
        status = (RunStatus.SUCCEEDED if ok else RunStatus.ENDED if outcome.get("unknown")
                  else RunStatus.STOPPED if outcome.get("interrupted") else RunStatus.FAILED)
        summary = add_loss_plot(build_summary(self.state, run_id), local_run_dir(run_id))
        summary["status"] = status
        self.state.update_run(run_id, status=status, ended_at=time.time(), summary=summary,
                              message=outcome.get("error"))
        (local_run_dir(run_id) / "summary.json").write_text(
            json.dumps(summary, indent=1, ensure_ascii=False, default=str))
        return status, summary

    def _collect(self, transport: Transport, remote_dir: str, local: Path) -> None:
        """Copy the report and log to the laptop (the watchdog leaves the stop to an attached laptop)."""
        try:
            remote_job.touch_heartbeat(transport, remote_dir)
            for name in (REPORT, TRAIN_LOG, EXIT_CODE, WATCHDOG_STATUS):
                try:
                    (local / name).write_bytes(transport.read_bytes(str(RunPaths.on_pod(remote_dir).root / name)))
                except FileNotFoundError:
                    pass
            for tree in retrieve.TREES:  # TensorBoard's event files: `tensorboard --logdir` works on the laptop
                if retrieve.fetch_tree(transport, remote_dir, local, tree):
                    self.ui.info(f"{tree} logs: {local / tree}")
        except (OSError, PodtuneError) as exc:
            self.ui.warn(f"could not copy the run's report from the pod: {_message(exc)}")

    def stop_unlaunched(self, provider: Provider, pod_id: str, exc: BaseException) -> None:
        why = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed before the job started on the pod"
        try:
            self.stop_pod(provider, pod_id)
        except BaseException as stop_exc:  # noqa: BLE001 - the first error is the one to show; this one is said too
            self.ui.warn(f"{why}, and stopping pod {pod_id} failed too ({_message(stop_exc)}): it may still bill. "
                         f"Stop it with: podtune stop --pod {pod_id}")
            return
        self.ui.warn(f"{why}: stopped pod {pod_id} so it does not bill (its volume is kept; "
                     "`podtune run` again resumes it)")

    def stop_run_processes(self, transport: Transport, pod: Pod, remote_dir: str) -> list[str]:
        """Remove the token, then end the job's process groups; returns which ones were running.

        The token goes first: the job's end lets the pod's watchdog stop the pod, which can close this connection."""
        remove_token(transport, PodLayout(pod.workspace), Path(remote_dir).name)
        return remote_job.kill(transport, remote_dir)

    def stop_pod(self, provider: Provider, pod_id: str) -> None:
        provider.stop(pod_id)
        self.state.set_pod_status(pod_id, PodState.STOPPED)

    def resolve(self, run_id: str, provider: Provider | None = None) -> tuple[RunRecord, Provider, Pod]:
        run = self.state.get_run(run_id)
        if run is None:
            raise PodtuneError(f"no run {run_id!r}", "list runs with: podtune runs")
        if provider is None:
            recipe = load_recipe_or_fail(Path(run.recipe_path))
            provider = get_provider(run.provider, recipe)
        if run.pod_id is None or run.remote_dir is None:
            raise PodtuneError(f"run {run_id} never reached a pod (status {run.status})")
        pod = provider.get(run.pod_id)
        if pod is None:
            raise PodGone(f"pod {run.pod_id} of run {run_id} no longer exists (terminated)")
        return run, provider, pod


def tracker_key(recipe: Recipe) -> str | None:
    """The W&B key when the recipe reports to wandb (credentials.require has made sure there is one)."""
    return wandb_api_key() if "wandb" in recipe.training.report_to else None


class _PlotsWarmUp:
    """Imports the report's plotting libraries on a low-priority thread once training runs (about a second of
    CPU): the report at the end then does not wait for them, and on a machine that is also the pod (local
    provider) they do not compete with the pipeline's own imports at its start."""

    def __init__(self) -> None:
        self.started = False

    def start(self) -> None:
        if self.started:
            return
        self.started = True
        import threading

        threading.Thread(target=self._run, name="plots-warm-up", daemon=True).start()

    @staticmethod
    def _run() -> None:
        import os
        import threading

        from .plots import warm_up

        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)  # this thread only (Linux); best effort
        except (AttributeError, OSError):
            pass
        warm_up()


def _message(exc: BaseException) -> str:
    if isinstance(exc, PodtuneError):
        return exc.message
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted before launch"
    return f"{exc.__class__.__name__}: {exc}"
