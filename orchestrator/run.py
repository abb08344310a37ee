"""The phase machine of one run: plan, provision, connect, sync, setup and launch, then follow the pod's own
phases, stop, report (RUN_PHASES lists the phases recorded).

Every step is recorded in the state DB before it can fail, so any later `podtune` can re-attach, stop or cost it.
Nothing here knows which provider it drives; what differs lives behind providers/base.py.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from remote.events import (EXIT_CODE, PIPELINE_PHASES, REPORT, TENSORBOARD, TRAIN_LOG, WATCHDOG_STATUS, EventKind,
                           Phase, RunInfo, RunPaths, WorkspacePaths)
from remote.recipe import Recipe, RecipeError, dump_recipe, load_recipe
from remote.requirements import for_recipe

from . import __version__
from .pod import remote_job, retrieve
from .planning.datafiles import check_fits_recipe, given_data_file, recipe_data_files, with_data
from .errors import CapacityError, ConfigError, PodStopped, PodtuneError, RemoteJobError
from .live import Meter
from .paths import REPO_ROOT, local_run_dir
from .pod.pod_secrets import (WANDB_KEY, all_secret_paths, deliver_secret, deliver_token, remove_token,
                              remove_token_quietly, secret_files, secret_paths, token_paths)
from .pod_control import resolve_run, stop_job, stop_pod
from .pod.pod_setup import prepare, requirements_key
from .providers import Pod, PodSpec, PodState, Provider, get_provider
from .secrets import hf_token, redact, wandb_api_key
from .ssh_keys import ensure_keypair
from .state import PodRecord, RunRecord, RunStatus, State
from .pod.sync import FileEntry, entry, sync, tree_entries
from .pod.transport import Transport
from .ui import UI

if TYPE_CHECKING:
    from .outcome import RunOutcome
    from .planning.plan import Plan
    from .report import RunSummary

# Following and reporting (outcome -> report -> costs, follow) are imported where the job is followed: ~10 ms of
# CPU that no longer comes before the launch, and overlaps the pipeline's own start on the pod instead.

ACTIVE_RUN_STATES = (RunStatus.PROVISIONING, RunStatus.RUNNING, RunStatus.DETACHED)  # may still be using its pod
UNSETTLED_RUN_STATES = (*ACTIVE_RUN_STATES, RunStatus.ENDED)  # ENDED: its pod stopped, how it ended is on the volume
# The phases a run records, in order: the laptop's steps (setup ends with the job's launch), the pod's pipeline
# (metered from its events; a phase it skips is not recorded), then the stop.
RUN_PHASES = (Phase.PLAN, Phase.PROVISION, Phase.CONNECT, Phase.SYNC, Phase.SETUP, *PIPELINE_PHASES, Phase.STOP)


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
    from .pod.host_keys import HostKeyStore
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


@dataclass(frozen=True)
class JobStart:
    """What starting a job on a pod differs in between run, resume and push: all three go through
    Runner.start_job."""

    recipe: Recipe
    data_files: tuple[Path, ...] | None  # uploaded with the code; None: nothing is synced (a push uses the volume)
    token: str | None
    wandb_key: str | None = None
    phases: str = ",".join(PIPELINE_PHASES)
    fails_run: bool = True  # a start that fails marks the run failed (a push again leaves its outcome as it was)
    retry: str = "`podtune run` again resumes it"  # said when a failed start stopped the pod


class Runner:
    """`run` (and `resume`, a run continued from its checkpoint) and `push_again` start a job on a pod through one
    path, `start_job`, whose one guard stops the pod when any step before the job runs fails or is interrupted;
    `attach` follows the job to its end, then stops the pod and reports.

    The phases a run records are RUN_PHASES, in order: plan, provision, connect, sync, setup (which ends with the
    job's launch); then the pod's own download, train, merge and push, from its events; then stop. Each laptop
    step runs inside `phase`. Billed time no phase covers shows as idle in the report."""

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
        plan = self.plan(recipe, recipe_path, provider, data_files, token, opts)
        run_id = new_run_id(self.state, recipe.name)
        self.state.add_run(RunRecord(
            id=run_id, recipe_name=recipe.name, recipe_path=str(recipe_path.resolve()), provider=provider.name,
            status=RunStatus.PROVISIONING, created_at=time.time(), estimate=plan.as_dict(),
        ))
        # A plan the user turns down records nothing: the run, and its plan phase, exist once it is accepted.
        with self.phase(run_id, Phase.PLAN, since=plan.started_at, announce=False):
            self.ui.info(f"run {run_id}")
        needs_token = bool(token and (recipe.output.hub_repo or not recipe.model.is_builtin))
        job = JobStart(recipe, tuple(data_files), token if needs_token else None, wandb_key=tracker_key(recipe))
        pod, transport = self.start_job(run_id, provider, job, opts,
                                        provision=lambda: self.provision(run_id, recipe, provider, plan.gpu_types))
        if opts.detach:
            self.state.update_run(run_id, status=RunStatus.DETACHED)
            self.ui.detached(run_id)
            return run_id
        self.attach(run_id, opts, transport=transport, provider=provider)
        return run_id

    def plan(self, recipe: Recipe, recipe_path: Path, provider: Provider, data_files: list[Path], token: str | None,
             opts: RunOptions) -> Plan:
        """The plan, shown, and accepted (asked unless --yes); refused: nothing is rented or recorded."""
        from .planning.plan import make_plan

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
        return plan

    def start_job(self, run_id: str, provider: Provider, job: JobStart, opts: RunOptions, *,
                  pod: Pod | None = None, provision: Callable[[], Pod] | None = None) -> tuple[Pod, Transport]:
        """Provision (when `provision` is given: rent or restart the pod; else `pod` is running), connect, sync,
        set up and launch, each in its phase. Until the job runs nothing on the pod would stop it, so a failure or
        Ctrl-C in any of these stops the pod here: this is the one place that does."""
        warm: remote_job.WarmStart | None = None
        transport: Transport | None = None
        try:
            if provision is not None:
                with self.phase(run_id, Phase.PROVISION):
                    pod = provision()
            assert pod is not None  # given, or just provisioned
            with self.phase(run_id, Phase.CONNECT):
                transport = self.connect(provider, pod, opts.connect_timeout_s)
            layout = WorkspacePaths.on_pod(pod.workspace)
            self.state.update_run(run_id, remote_dir=str(layout.run(run_id).root))
            requirements = for_recipe(job.recipe)
            key = requirements_key(requirements)
            warm = self.start_warm(transport, pod, layout, run_id, key, job.phases)
            if job.data_files is not None:
                with self.phase(run_id, Phase.SYNC):
                    sent = self.upload(transport, pod, layout, run_id, job.recipe, list(job.data_files))
                    self.ui.info(f"synced: {len(sent.uploaded)} file(s) uploaded, {sent.unchanged} unchanged")
            with self.phase(run_id, Phase.SETUP):
                ready = prepare(transport, layout, pod.python, requirements,
                                on_line=lambda line: self.ui.info(f"  setup: {line}"))
                self.ui.info(f"python on the pod: {ready.python}" + (
                    f" (new venv: {ready.seconds:.0f} s, {ready.downloaded_bytes / 1e6:,.0f} MB downloaded)"
                    if ready.created else ""))
                self.launch(transport, provider, pod, layout, run_id, job.recipe, ready.python, job.token,
                            phases=job.phases, wandb_key=job.wandb_key, warm=warm, requirements_key=key)
        except BaseException as exc:
            if job.fails_run:
                self.state.update_run(run_id, status=RunStatus.FAILED, ended_at=time.time(), message=_message(exc))
            if warm is not None and transport is not None:
                with suppress(Exception):  # best effort: unclaimed, it gives up by itself (WARM_WAIT_S)
                    remote_job.cancel_warm(transport, layout, run_id)
            if pod is not None:
                self.stop_unlaunched(provider, pod.id, exc, retry=job.retry)
            raise
        assert transport is not None  # connected above
        return pod, transport

    def start_warm(self, transport: Transport, pod: Pod, layout: WorkspacePaths[PurePosixPath], run_id: str,
                   requirements_key: str, phases: str) -> remote_job.WarmStart | None:
        """The pod's Python importing the training libraries while sync and setup run (BENCHMARKS.md): the launch
        hands it the job. A warm start that cannot start costs nothing but the time of its one command."""
        if not remote_job.warm_worth_it(phases):
            return None
        try:
            return remote_job.start_warm(transport, layout, run_id, pod.python, requirements_key)
        except (RemoteJobError, OSError) as exc:
            self.ui.info(f"the pod's Python starts with the job instead of ahead of it: {exc}")
            return None

    @contextmanager
    def phase(self, run_id: str, name: Phase, *, since: float | None = None, announce: bool = True) -> Iterator[None]:
        """One step of the run, timed in the state DB (a failed one is recorded as failed) and on screen.
        `since`: the step began before the run was recorded (the plan); `announce`: say its name first."""
        self.state.phase_started(run_id, name, since)
        if announce:
            self.ui.phase(name)
        self.ui.live.meter = Meter.for_run(self.state, run_id)
        self.ui.live.begin(name, since)
        try:
            with self.ui.live.activity():  # a spinner with the elapsed time: no phase is ever silent
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
        try:
            # Recorded before any wait, so no pod is ever billed without podtune knowing about it.
            self.state.upsert_pod(PodRecord(
                id=pod.id, provider=pod.provider, name=pod.name, status=pod.state, created_at=time.time(),
                recipe_name=recipe.name, gpu_type=pod.gpu_type, gpu_count=pod.gpu_count, cost_per_hr=pod.cost_per_hr,
                storage_per_hr=pod.storage_per_hr, volume_gb=pod.volume_gb,
                spec={"image": recipe.compute.image, "volume_gb": recipe.compute.volume_gb},
            ))
            self.state.set_pod_status(pod.id, PodState.RUNNING)
            self.state.update_run(run_id, pod_id=pod.id)
        except BaseException as exc:
            # The run does not know its pod yet, so the start-job guard cannot stop it: stop it here.
            self.stop_unlaunched(provider, pod.id, exc)
            raise
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

    def upload(self, transport: Transport, pod: Pod, layout: WorkspacePaths[PurePosixPath], run_id: str, recipe: Recipe,
               data_files: list[Path]):
        """Sync code and data (content-addressed, so a re-run sends nothing), then lay out the run directory."""
        paths = layout.run(run_id)
        recipe_text = dump_recipe(recipe)
        RunPaths(local_run_dir(run_id)).recipe.write_text(recipe_text, encoding="utf-8")
        entries: list[FileEntry] = tree_entries(REPO_ROOT / "remote", f"{layout.code}/remote")
        entries.append(entry(REPO_ROOT / "pyproject.toml", f"{layout.code}/pyproject.toml"))
        entries.append(entry(REPO_ROOT / "constraints.txt", str(layout.constraints)))
        data = [entry(path, "") for path in data_files]
        data = [replace(d, remote=f"{layout.code}/data/{d.sha256[:16]}-{d.local.name}") for d in data]
        result = sync(transport, pod.python, entries + data)
        # One command lays out the run directory: the data links, and the recipe (on stdin, written atomically).
        # A separate SFTP write of the recipe cost a round trip or more (~40 ms on loopback) before the launch.
        recipe_file, recipe_tmp = shlex.quote(str(paths.recipe)), shlex.quote(str(paths.recipe) + ".podtune-tmp")
        steps = [f"mkdir -p {shlex.quote(str(paths.data))}"]
        steps += [f"ln -f {shlex.quote(d.remote)} {shlex.quote(str(paths.data / d.local.name))}" for d in data]
        steps.append(f"umask 022 && cat > {recipe_tmp} && mv -f {recipe_tmp} {recipe_file}")
        transport.exec(" && ".join(steps), stdin=recipe_text.encode(), timeout_s=60).check(
            "preparing the run directory")
        return result

    def launch(self, transport: Transport, provider: Provider, pod: Pod, layout: WorkspacePaths[PurePosixPath],
               run_id: str, recipe: Recipe, python: str, token: str | None, phases: str = ",".join(PIPELINE_PHASES),
               wandb_key: str | None = None, warm: remote_job.WarmStart | None = None,
               requirements_key: str | None = None) -> None:
        paths = layout.run(run_id)
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
        marked: list[int] = []
        try:
            transport.write_bytes(str(paths.run_info), info.to_json().encode())
            # The only way the token reaches the pod: a 0600 file over the encrypted channel (pod_secrets.py).
            token_file = deliver_token(transport, python, layout, run_id, token) if token else None
            # The W&B key travels the same way; only the trainer reads it, in memory (never its environment).
            key_file = deliver_secret(transport, python, layout, run_id, wandb_key, WANDB_KEY) if wandb_key else None
            # Where this launch's events begin: measured by the launch command itself, just before it starts the job.
            remote_job.launch(transport, layout, run_id, python, token_file=token_file, phases=phases,
                              wandb_key_file=key_file, on_events_size=marked.append, warm=warm,
                              requirements_key=requirements_key)
        except BaseException:
            # No job runs that would remove it: a failed or interrupted launch must not leave the token behind.
            if token or wandb_key:
                problem = remove_token_quietly(transport, layout, run_id)
                if problem:
                    self.ui.warn(f"could not remove the Hub token from the pod ({problem}); it is in one of "
                                 f"{', '.join(all_secret_paths(layout, run_id))}")
            with suppress(OSError):
                mark_attempt(run_id, marked)
            raise
        mark_attempt(run_id, marked)
        self.state.update_run(run_id, status=RunStatus.RUNNING)
        self.ui.info("training started on the pod (detached: Ctrl-C here leaves it running)")

    def restart(self, provider: Provider, pod: Pod, retry: str) -> Pod:
        """Start the run's stopped pod again; its volume holds what the run left (checkpoints, the model)."""
        expect_new_host_key(pod.id)
        try:
            pod = provider.start(pod.id)
        except CapacityError as exc:
            expect_new_host_key(pod.id, expected=False)  # it did not start: no new key to expect
            raise PodtuneError(f"pod {pod.id} cannot start now: {exc.message}. What the run left stays on its volume",
                               f"try again later: {retry}") from None
        self.state.set_pod_status(pod.id, PodState.RUNNING)
        return pod

    def push_again(self, run_id: str, opts: RunOptions) -> RunSummary | None:
        """Retry the push of a finished run: restart its pod if stopped, push from the volume, stop it again."""
        run, provider, pod = resolve_run(self.state, run_id)
        recipe = load_recipe_or_fail(Path(run.recipe_path))
        if not recipe.output.hub_repo:
            raise ConfigError(f"run {run_id} has no output.hub_repo in its recipe", "set output.hub_repo and run again")
        token = hf_token()
        if not token:
            raise PodtuneError("no Hub token found", "set HF_TOKEN or run `hf auth login` (a write token)")
        from .planning.plan import check_hub

        check_hub(recipe, token)
        if pod.state == PodState.STOPPED and provider.rents:
            record = self.state.get_pod(pod.id)
            rate = record.cost_per_hr if record else pod.cost_per_hr
            question = f"Restart pod {pod.id} (${rate:.3f}/h) to push run {run_id}'s model from its volume?"
            if not opts.yes and not self.ui.confirm(question):
                raise PodtuneError("not pushed: the pod stays stopped", f"podtune push {run_id} --yes restarts it without asking")

        def restart() -> Pod:
            started = self.restart(provider, pod, f"podtune push {run_id}")
            self.ui.info(f"restarted pod {started.id} to push from its volume")
            return started

        job = JobStart(recipe, None, token, phases=Phase.PUSH, fails_run=False,
                       retry=f"`podtune push {run_id}` tries again")
        _, transport = self.start_job(run_id, provider, job, opts, pod=pod,
                                      provision=restart if pod.state == PodState.STOPPED else None)
        return self.attach(run_id, opts, transport=transport, provider=provider)

    def resume(self, run_id: str, opts: RunOptions) -> RunSummary | None:
        """Continue a stopped or failed run on its pod: restart it, relaunch; training goes on from the last
        checkpoint on the volume to the same final step, phases already done are skipped, then stop as usual."""
        run, provider, pod = resolve_run(self.state, run_id)
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

        def restart() -> Pod:
            started = self.restart(provider, pod, f"podtune resume {run_id}")
            self.ui.info(f"restarted pod {started.id}; its volume holds the run's checkpoints")
            return started

        needs_token = bool(token and (recipe.output.hub_repo or not recipe.model.is_builtin))
        # Code only: the data is on the volume.
        job = JobStart(recipe, (), token if needs_token else None, wandb_key=tracker_key(recipe),
                       retry=f"`podtune resume {run_id}` tries again")
        _, transport = self.start_job(run_id, provider, job, opts, pod=pod,
                                      provision=restart if pod.state != PodState.RUNNING else None)
        self.ui.info(f"resumed run {run_id}: training goes on from the last checkpoint on the volume")
        return self.attach(run_id, opts, transport=transport, provider=provider)

    def _billed_since(self, pod_id: str) -> float:
        intervals = self.state.pod_intervals(pod_id)
        if intervals and intervals[-1][1] is None:
            return intervals[-1][0]
        return time.time()

    # ---- following, finishing -----------------------------------------------------------------------------
    def attach(self, run_id: str, opts: RunOptions, *, transport: Transport | None = None,
               provider: Provider | None = None) -> RunSummary | None:
        """Follow the job to its end, then stop the pod and report; None when Ctrl-C detached from it."""
        from .outcome import RunOutcome, record_pod_event, settle
        from .pod.follow import CONNECTION_ERRORS, EventFollower, OffsetReader

        run, provider, pod = resolve_run(self.state, run_id, provider)
        if pod.state != PodState.RUNNING:
            outcome = settle(self.state, self.ui, run_id, provider, pod, yes=opts.yes, retry=f"podtune attach {run_id}",
                             show=True)
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

        def show_raw(to_the_end: bool = False) -> None:
            if raw is None:
                return
            raw.transport = follower.transport  # the follower reconnects; this reader rides on its connection
            try:
                chunk = raw.read_rest() if to_the_end else raw.read_new()
            except CONNECTION_ERRORS:
                return
            for line in chunk.decode("utf-8", "replace").splitlines():  # as written: long lines are not wrapped
                self.ui.console.print(redact(line), markup=False, highlight=False, soft_wrap=True)

        def on_event(event: dict[str, Any]) -> None:
            if event.get("kind") == EventKind.STEP:
                warm.start()
            elif event.get("kind") == EventKind.TRAIN_DONE:  # the curve is whole: drawn while the pod merges
                from .loss_plot import LossPlotAhead

                LossPlotAhead.start(run_id, local_run_dir(run_id))
            record_pod_event(self.state, run_id, event)
            if raw is None:
                self.ui.event(event)

        self.ui.live.meter = Meter.for_run(self.state, run_id)
        try:
            with self.ui.live.activity() if raw is None else nullcontext():
                # follow.py answers with the pipeline's last event, or its own record in that shape.
                outcome = RunOutcome.from_event(follower.follow(
                    on_event=on_event, poll_s=opts.poll_s,
                    on_offset=lambda off: self.state.update_run(run_id, events_offset=off), on_poll=show_raw,
                ))
            show_raw(to_the_end=True)  # the last lines, written after the last event
        except KeyboardInterrupt:
            self.state.update_run(run_id, status=RunStatus.DETACHED)
            self.ui.detached(run_id)
            return None
        except PodStopped:
            pod = provider.get(pod.id) or pod
            outcome = settle(self.state, self.ui, run_id, provider, pod, yes=opts.yes, retry=f"podtune attach {run_id}",
                             show=True)
            return self.finish(run_id, None, provider, pod, outcome)
        finally:
            if raw is not None:
                raw.close()  # its tail on the pod
        return self.finish(run_id, follower.transport, provider, pod, outcome)

    def finish(self, run_id: str, transport: Transport | None, provider: Provider, pod: Pod,
               outcome: RunOutcome) -> RunSummary:
        from .outcome import record_outcome

        run = self.state.get_run(run_id)
        assert run is not None and run.remote_dir
        local = local_run_dir(run_id)
        # The pipeline said it is done: its report and log are final, so the bill stops now, not after its
        # interpreter has torn down (the pod's stop ends every process on it anyway).
        with self.phase(run_id, Phase.STOP):
            try:
                if transport is not None:
                    # Done: the secrets go in the same command that fetches the report; else the job is ended.
                    layout = WorkspacePaths.on_pod(pod.workspace)
                    self._collect(transport, run.remote_dir, local,
                                  secrets=layout if outcome.work_done else None)
                    if not outcome.work_done:
                        stop_job(transport, pod, run.remote_dir)
            except (PodtuneError, OSError) as exc:
                self.ui.warn(f"could not end the job over SSH ({_message(exc)}); stopping pod {pod.id} anyway")
            finally:
                stop_pod(self.state, provider, pod.id)  # whatever SSH did: the provider's stop ends the billing
            if outcome.work_done and transport is not None and not provider.rents:
                # The user's own machine stays up after the stop: what is left of the job ends here. Detached:
                # the pipeline said it is done and its watchdog leaves by itself within a poll, so this is the net
                # under them, and waiting on their exit (~70 ms) held the prompt back.
                try:
                    remote_job.kill(transport, run.remote_dir, detach=True)
                except (PodtuneError, OSError) as exc:
                    self.ui.warn(f"could not end the job's processes over SSH ({_message(exc)})")
        summary = record_outcome(self.state, run_id, outcome)
        self.ui.report(summary)
        if not outcome.ok:
            status = outcome.status
            raise RemoteJobError(
                f"run {run_id} {status} in phase {outcome.phase or run.phase}: {outcome.error or ''}".strip(),
                f"see the pod's log: podtune logs {run_id}"
                + (f"; continue from its last checkpoint: podtune resume {run_id}" if status == RunStatus.STOPPED else ""),
            )
        return summary

    def _collect(self, transport: Transport, remote_dir: str, local: Path, *,
                 secrets: WorkspacePaths[PurePosixPath] | None = None) -> None:
        """Copy the report and log to the laptop (the watchdog leaves the stop to an attached laptop), and with
        `secrets` delete the run's secrets on the pod: one command (remote_job.collect), the stop waits on it.
        A failed removal raises, for the caller to say; a failed copy is said here."""
        run_id = Path(remote_dir).name
        remove = tuple(secret_files(secrets, run_id)) if secrets else ()
        try:
            got = remote_job.collect(transport, remote_dir, (REPORT, TRAIN_LOG, EXIT_CODE, WATCHDOG_STATUS),
                                     remove=remove)
        except (OSError, PodtuneError) as exc:
            self.ui.warn(f"could not copy the run's report from the pod: {_message(exc)}")
            if secrets:
                remove_token(transport, secrets, run_id)  # its own requests; raises when the pod cannot be asked
            return
        for name, data in got.files.items():
            (local / name).write_bytes(data)
        try:
            # TensorBoard's event files: `tensorboard --logdir` works on the laptop.
            for tree in _written_trees(local):
                if retrieve.fetch_tree(transport, remote_dir, local, tree):
                    self.ui.info(f"{tree} logs: {local / tree}")
        except (OSError, PodtuneError) as exc:
            self.ui.warn(f"could not copy the run's report from the pod: {_message(exc)}")
        if not got.removed:
            raise RemoteJobError(f"deleting the run's secrets on the pod failed: {got.detail or 'rm failed'}")

    def stop_unlaunched(self, provider: Provider, pod_id: str, exc: BaseException, *,
                        retry: str = "`podtune run` again resumes it") -> None:
        why = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed before the job started on the pod"
        try:
            stop_pod(self.state, provider, pod_id)
        except BaseException as stop_exc:  # noqa: BLE001 - the first error is the one to show; this one is said too
            self.ui.warn(f"{why}, and stopping pod {pod_id} failed too ({_message(stop_exc)}): it may still bill. "
                         f"Stop it with: podtune stop --pod {pod_id}")
            return
        self.ui.warn(f"{why}: stopped pod {pod_id} so it does not bill (its volume is kept; {retry})")


def mark_attempt(run_id: str, events_size: list[int]) -> None:
    """A new attempt of the run: its events begin at the size the launch command saw. A launch that failed before
    that command saw none: everything the laptop copied so far belongs to earlier attempts. Either way no earlier
    attempt's report or exit code can pass for this one's."""
    local = local_run_dir(run_id)
    if events_size:
        size = events_size[0]
    else:
        copy = RunPaths(local).events
        size = copy.stat().st_size if copy.exists() else 0
    retrieve.mark_launch(local, size)


def _written_trees(local: Path) -> tuple[str, ...]:
    """The run folders the pod may have written: TensorBoard's only when the recipe reports to it. Listing one is
    a command on the pod (a round trip at the end of every run, ~10-50 ms on loopback), so none is asked for in
    vain; when the laptop's copy of the recipe cannot be read, all are."""
    try:
        report_to = load_recipe(RunPaths(local).recipe).training.report_to
    except RecipeError:
        return retrieve.TREES
    return tuple(tree for tree in retrieve.TREES if tree != TENSORBOARD or "tensorboard" in report_to)


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
