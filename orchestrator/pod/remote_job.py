"""Starts, inspects and stops the detached pipeline and watchdog of one run on a pod.

Both run under `nohup setsid`, each leading its own process group, with pid files in the run directory: the
laptop can disconnect, and any later `podtune` can find them again from the state DB.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath

from remote.events import (PID, PIPELINE_PHASES, WARM, WARM_PID, WATCHDOG_PID, Phase, RunPaths, WarmPaths,
                           WorkspacePaths)

from ..paths import WARM_SCRIPT
from .transport import Transport

WARM_WAIT_S = 300  # a warm start nobody claims gives up after this (a long sync, a venv being built)


def _env_exports(layout: WorkspacePaths[PurePosixPath]) -> str:
    env = {
        "HF_HOME": str(layout.hf_home),
        "PYTHONPATH": str(layout.code),
        "PYTHONUNBUFFERED": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    return " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())


def qp(path: PurePosixPath) -> str:
    return shlex.quote(str(path))


@dataclass(frozen=True)
class WarmStart:
    """The pod's Python started ahead of the launch (remote/warm.py), importing the training libraries."""

    python: str  # the interpreter it runs: the launch uses it only when setup chose the same one


def warm_worth_it(phases: str) -> bool:
    """Only a job that trains or merges imports the training libraries; a push alone would wait for them."""
    return bool({Phase.TRAIN.value, Phase.MERGE.value} & set(phases.split(",")))


def start_warm(transport: Transport, layout: WorkspacePaths[PurePosixPath], run_id: str, python: str,
               requirements_key: str, *, imports: str | None = None) -> WarmStart:
    """Start the pod's Python now (detached, like the job), to import the training libraries while the laptop
    syncs and sets up. Its guess of the interpreter is the one the last launch with these requirements used
    (remembered on the pod), else the pod's own; `launch` claims it, or cancels it when setup chose another.
    imports: what it imports ahead (remote/warm.py's --imports); None: what training imports."""
    q = shlex.quote
    warm = layout.run(run_id).warm
    paths = layout.run(run_id)
    options = warm.boot_options(str(layout.code), str(paths.log), WARM_WAIT_S)
    options += ["--imports", imports] if imports is not None else []
    # Its exit code is the run's only once it took the job; giving up or being cancelled is not the run's end.
    boot = (f'"$py" -u {qp(warm.script)} {shlex.join(options)}; rc=$?;'
            f" if [ -e {qp(warm.went)} ]; then echo $rc > {qp(paths.exit_code)}; fi")
    # An earlier attempt's warm start for this run (a resume) is ended first: it must never see this one's claim.
    script = f"""
set -e
py=$(cat {qp(layout.last_python(requirements_key))} 2>/dev/null || true)
if [ -z "$py" ] || [ ! -x "$py" ]; then py={q(python)}; fi
{_cancel_warm_steps(warm)}
rm -rf {qp(warm.root)}
mkdir -p {qp(warm.root)} {qp(layout.code)}
cat > {qp(warm.script)}
cd {qp(layout.code)}
export {_env_exports(layout)}
py="$py" nohup setsid sh -c {q(boot)} > {qp(warm.log)} 2>&1 < /dev/null &
echo $! > {qp(warm.pid)}
echo "python=$py"
"""
    done = transport.exec(script, stdin=WARM_SCRIPT.read_bytes(), timeout_s=60)
    done.check("starting the pod's Python ahead of the job")
    used = next((line.split("=", 1)[1] for line in done.stdout.splitlines() if line.startswith("python=")), python)
    return WarmStart(python=used)


def _read_pid(var: str, path: str) -> str:
    """Shell that sets $var to the pid in `path`, or to nothing when the file is missing or holds anything else."""
    return f"{var}=$(cat {shlex.quote(path)} 2>/dev/null || true); case \"${var}\" in ''|*[!0-9]*) {var}=;; esac;"


def _cancel_warm_steps(warm: WarmPaths[PurePosixPath]) -> str:
    """Claim a warm start without arguments (it exits) and end its group, should it still be importing."""
    return (f"if [ -f {qp(warm.pid)} ]; then mkdir {qp(warm.claim)} 2>/dev/null || true;"
            f" {_read_pid('wpid', str(warm.pid))}"
            f" if [ -n \"$wpid\" ]; then kill -TERM -\"$wpid\" 2>/dev/null || true; fi;"
            f" rm -f {qp(warm.pid)}; fi")


def cancel_warm(transport: Transport, layout: WorkspacePaths[PurePosixPath], run_id: str) -> None:
    """A start that failed before its launch leaves no Python importing on the pod."""
    transport.exec(_cancel_warm_steps(layout.run(run_id).warm), timeout_s=30)


def launch(transport: Transport, layout: WorkspacePaths[PurePosixPath], run_id: str, python: str, *,
           token_file: str | None, phases: str = ",".join(PIPELINE_PHASES), wandb_key_file: str | None = None,
           on_events_size: Callable[[int], None] | None = None, warm: WarmStart | None = None,
           requirements_key: str | None = None) -> bool:
    """Start pipeline + watchdog detached; returns once their pid files exist. Secrets go by file path only.

    warm: the warm start of this run, handed the job when it runs `python` and is alive, else cancelled and the
    job started the ordinary way. Returns whether the warm start took the job. requirements_key: remember
    `python` on the pod for the next warm start with these requirements.

    on_events_size gets the size events.jsonl had just before the start (where this launch's events begin; 0 when
    the command could not tell), whether or not the start then succeeded: one command, not a round trip of its own."""
    paths = layout.run(run_id)
    run_dir = str(paths.root)
    q = shlex.quote
    args = ["pipeline", "--run-dir", run_dir]
    args += ["--token-file", token_file] if token_file else []
    args += ["--wandb-key-file", wandb_key_file] if wandb_key_file else []
    args += ["--phases", phases]
    pipeline = f"{q(python)} -u -m remote {shlex.join(args)}; echo $? > {qp(paths.exit_code)}"
    wp = paths.warm
    take_warm = ""
    if warm is not None and warm.python == python:
        # Alive (a zombie is not) and not given up: the arguments first, then the claim that hands them over.
        take_warm = f"""
{_read_pid("wpid", str(wp.pid))}
if [ -n "$wpid" ] && ( {group_alive_command('"$wpid"')} ); then
  printf '%s' {q(json.dumps(args))} > {qp(wp.args)}.tmp && mv -f {qp(wp.args)}.tmp {qp(wp.args)}
  if mkdir {qp(wp.claim)} 2>/dev/null; then
    mv -f {qp(wp.pid)} {qp(paths.pid)}; started=warm
  else
    rm -f {qp(wp.args)}
  fi
fi"""
    remember = ""
    if requirements_key:
        remember = (f"\nmkdir -p {qp(layout.venvs)}"
                    f" && printf '%s' {q(python)} > {qp(layout.last_python(requirements_key))}")
    script = f"""
set -e
cd {qp(layout.code)}
mkdir -p {q(run_dir)}
echo "events_size=$(wc -c 2>/dev/null < {qp(paths.events)} || echo 0)"
rm -f {qp(paths.exit_code)}
# train.log exists from the launch on (a warm start writes it only once it has the job): `tail -F` follows it at once
: >> {qp(paths.log)}
export {_env_exports(layout)}
started=
{take_warm}
if [ -z "$started" ]; then
  {_cancel_warm_steps(wp)}
  nohup setsid sh -c {q(pipeline)} >> {qp(paths.log)} 2>&1 < /dev/null &
  echo $! > {qp(paths.pid)}
  started=cold
fi
nohup setsid {q(python)} -u -m remote watchdog --run-dir {q(run_dir)} >> {qp(paths.watchdog_log)} 2>&1 < /dev/null &
echo $! > {qp(paths.watchdog_pid)}{remember}
echo "started=$started"
"""
    done = transport.exec(script, timeout_s=60)
    if on_events_size is not None:
        size = next((line.split("=", 1)[1].strip() for line in done.stdout.splitlines()
                     if line.startswith("events_size=")), "")
        on_events_size(int(size) if size.isdigit() else 0)
    done.check("starting the training job")
    return "started=warm" in done.stdout.split()


def _pid(transport: Transport, path: str) -> int | None:
    try:
        return int(transport.read_bytes(path).decode().strip())
    except (FileNotFoundError, ValueError, OSError):
        return None


def exit_code(transport: Transport, run_dir: str) -> int | None:
    try:
        return int(transport.read_bytes(str(RunPaths.on_pod(run_dir).exit_code)).decode().strip())
    except (FileNotFoundError, ValueError):
        return None


def is_alive(transport: Transport, run_dir: str, pid_file: str = PID) -> bool:
    pid = _pid(transport, f"{run_dir}/{pid_file}")
    if pid is None:
        return False
    # A follower asks every ~2 s: a file read over the open channel costs the pod no shell (a command did: a
    # session and a shell each time). Like `kill -0`, a zombie counts as there.
    try:
        transport.read_bytes(f"/proc/{pid}/stat", 0, 1)
        return True
    except FileNotFoundError:
        pass  # gone, or no /proc (a macOS laptop as the local provider): kill -0 says which
    return transport.exec(f"kill -0 {pid} 2>/dev/null", timeout_s=30).rc == 0


def group_alive_command(pgid: int | str) -> str:
    """Exits 0 while a live process is in the group. A zombie is gone: a pod whose PID 1 is a shell never reaps
    one (and slow reapers keep them for a while), so `kill -0 -PGID` alone would wait out the whole grace period.
    Without /proc (a macOS laptop as the local provider) `kill -0` is what there is."""
    return (f'if [ -r /proc/self/stat ]; then for f in /proc/[0-9]*/stat; do read -r l < "$f" 2>/dev/null || continue;'
            f' set -- ${{l##*") "}}; [ "$3" = {pgid} ] && [ "$1" != Z ] && exit 0; done; exit 1;'
            f' else kill -0 -{pgid} 2>/dev/null; fi')


_GROUP = '"$g"'  # the shell variable kill's script keeps the group id in


def kill(transport: Transport, run_dir: str, *, grace_s: float = 20, detach: bool = False) -> list[str]:
    """Stop the run's process groups: SIGTERM (the trainer saves a checkpoint), then SIGKILL after grace_s.

    One shell script does it all on the pod: a round trip per pid read, check and poll used to make this the
    longest step of a finished run's stop phase. detach: the script runs on by itself (nohup setsid) and this
    returns at once, with [] (it cannot say yet what was running)."""
    grace_cs = max(1, round(grace_s * 100))
    steps = []
    # The warm start too: a stop while the laptop was still syncing leaves no Python importing on the pod.
    for pid_file in (PID, WATCHDOG_PID, f"{WARM}/{WARM_PID}"):
        steps.append(
            f"{_read_pid('leader', f'{run_dir}/{pid_file}')}"
            f" if [ -n \"$leader\" ] && alive \"$leader\"; then"
            f" kill -TERM -\"$leader\" 2>/dev/null || kill -TERM \"$leader\";"
            # Polled every 20 ms for the first second (a process with nothing left to save is gone in tens of
            # ms: a coarser poll only adds to the stop phase), then every 100 ms until the grace is over.
            f" cs=0; while [ $cs -lt {grace_cs} ] && alive \"$leader\"; do"
            f" if [ $cs -lt 100 ]; then sleep 0.02; cs=$((cs+2)); else sleep 0.1; cs=$((cs+10)); fi; done;"
            f" kill -KILL -\"$leader\" 2>/dev/null; echo {shlex.quote(pid_file)}; fi"
        )
    # The check runs in a subshell (it ends with `exit`), the group id kept aside (it resets $1).
    script = f"alive() {{ ( g=$1; {group_alive_command(_GROUP)} ); }}; " + "; ".join(steps) + "; true"
    if detach:
        transport.exec(f"nohup setsid sh -c {shlex.quote(script)} >/dev/null 2>&1 </dev/null &",
                       timeout_s=30).check("stopping the run's processes")
        return []
    done = transport.exec(script, timeout_s=2 * grace_s + 30)
    done.check("stopping the run's processes")
    return [line for line in done.stdout.split() if line in (PID, WATCHDOG_PID)]


@dataclass(frozen=True)
class Collected:
    """What one `collect` brought back: the run's files that exist, and whether the removals went through."""

    files: dict[str, bytes]
    removed: bool
    detail: str = ""


COLLECT_WAIT_S = 120


def collect(transport: Transport, run_dir: str, names: tuple[str, ...], *, remove: tuple[str, ...] = ()) -> Collected:
    """At the end of an attached run, in one command: tell the watchdog a laptop is here (the heartbeat, so it
    leaves the stop to the laptop), send back those of the run's files `names` that exist, then delete `remove`
    (the run's secrets). Over SFTP this was ~26 requests answered one by one: ~2.6 s of billed GPU to a pod
    100 ms away, before the stop could be asked (BENCHMARKS.md). Raises SSHError when the pod cannot be asked."""
    paths = RunPaths.on_pod(run_dir)
    heartbeat = str(paths.heartbeat)
    tmp = f"{heartbeat}.podtune-tmp"
    steps = [f"printf %s {shlex.quote(str(time.time()))} > {shlex.quote(tmp)} && mv -f {shlex.quote(tmp)} "
             f"{shlex.quote(heartbeat)}"]
    for name in names:
        path = shlex.quote(str(paths.root / name))
        # The size first, then exactly that many bytes: a log still growing cannot shift the next header.
        steps.append(f"if [ -f {path} ]; then n=$(wc -c < {path}); printf '%s %s\\n' {shlex.quote(name)} $n;"
                     f" head -c $n {path}; fi")
    steps.append("rm -f -- " + " ".join(shlex.quote(p) for p in remove) if remove else "true")
    session = transport.stream("; ".join(steps), timeout_s=COLLECT_WAIT_S)
    out = bytearray()
    deadline = time.monotonic() + COLLECT_WAIT_S
    while time.monotonic() < deadline:
        try:
            out += session.read_available(1.0)
        except EOFError:
            break
    result = session.finish()
    return Collected(_files_in(bytes(out), names), removed=result.rc == 0, detail=result.stderr.strip()[-500:])


def _files_in(out: bytes, names: tuple[str, ...]) -> dict[str, bytes]:
    """`name size\\n` and `size` bytes, for each file in turn; stops at the first header that does not parse."""
    files: dict[str, bytes] = {}
    at = 0
    while at < len(out):
        end = out.find(b"\n", at)
        header = out[at:end].decode("utf-8", "replace").split(" ") if end >= 0 else []
        if len(header) != 2 or header[0] not in names or not header[1].isdigit():
            break
        size = int(header[1])
        files[header[0]] = out[end + 1:end + 1 + size]
        at = end + 1 + size
    return files


def touch_heartbeat(transport: Transport, run_dir: str) -> None:
    """Tells the watchdog a laptop is attached, so it leaves the final stop (after the report is fetched) to it."""
    transport.write_bytes(str(RunPaths.on_pod(run_dir).heartbeat), str(time.time()).encode())
