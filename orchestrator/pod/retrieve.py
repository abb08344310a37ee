"""A run's files from its pod's volume, for a podtune that was not attached when the work ended.

The pod stops itself when the work ends, laptop or not, so its log, events and report stay on the stopped volume.
Reading them means starting the pod for a minute or two: the price is said first, and asked unless --yes. A guard
on the pod stops it by itself should this laptop die during the fetch.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from remote.events import (EVENTS, EXIT_CODE, REPORT, TENSORBOARD, TRAIN_LOG, WATCHDOG_STATUS, EventKind, RunPaths,
                           read_events)

from ..errors import CapacityError, PodtuneError
from ..providers import Pod, Provider
from .transport import Transport

RUN_FILES = (EVENTS, TRAIN_LOG, REPORT, EXIT_CODE, WATCHDOG_STATUS)
BRIEF_S = 120.0  # what a brief start is priced at: boot, SSH, a few reads, stop
GUARD_S = 600  # the pod stops itself this long after a brief start, whatever happens to the laptop
END_KINDS = (EventKind.PIPELINE_DONE, EventKind.WATCHDOG_STOP, EventKind.SELF_STOPPED)


LAUNCH_OFFSET = "launch_offset"  # where the latest launch's events begin in events.jsonl (a resumed run has two)


def mark_launch(local: Path, events_size: int) -> None:
    """A new launch of the run: an earlier attempt's end and copies must not pass for this one's."""
    (local / LAUNCH_OFFSET).write_text(str(events_size))
    for name in RUN_FILES:
        if name != EVENTS:
            (local / name).unlink(missing_ok=True)


def launch_events(local: Path) -> list[dict[str, Any]]:
    """The laptop's copy of the events of the run's latest launch."""
    try:
        offset = int((local / LAUNCH_OFFSET).read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        offset = 0
    return read_events(RunPaths(local).events, offset)[0]


def has_end(local: Path) -> bool:
    """Whether the laptop's copy of the run already holds how its latest launch ended, and its log."""
    return RunPaths(local).log.exists() and any(e.get("kind") in END_KINDS for e in launch_events(local))


def fetch_files(transport: Transport, remote_dir: str, local: Path) -> list[str]:
    """Copy the run's files from the pod (the pod's events file replaces the laptop's partial copy)."""
    got = []
    for name in RUN_FILES:
        try:
            data = transport.read_bytes(str(RunPaths.on_pod(remote_dir).root / name))
        except FileNotFoundError:
            continue
        tmp = local / f".{name}.part"
        tmp.write_bytes(data)
        tmp.replace(local / name)
        got.append(name)
    return got


TREES = (TENSORBOARD,)  # folders of the run the laptop keeps a copy of (TensorBoard's event files)
TREE_FILE_MAX = 256 << 20


def fetch_tree(transport: Transport, remote_dir: str, local: Path, name: str = TENSORBOARD) -> list[str]:
    """Copy the run's folder `name` from the pod into the local run folder; returns the relative paths copied.

    Names come from the pod: only plain relative paths that stay inside the local folder are written."""
    root = f"{remote_dir}/{name}"
    listing = transport.exec(f"cd {shlex.quote(root)} 2>/dev/null && find . -type f -size -{TREE_FILE_MAX // 1024}k",
                             timeout_s=60)
    if listing.rc != 0:
        return []
    target = (local / name).resolve()
    got = []
    for line in listing.stdout.splitlines():
        rel = line.strip().removeprefix("./")
        if not rel or rel.startswith("/") or ".." in Path(rel).parts:
            continue
        dest = (target / rel).resolve()
        if not dest.is_relative_to(target):
            continue
        try:
            data = transport.read_bytes(f"{root}/{rel}")
        except FileNotFoundError:
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.part")
        tmp.write_bytes(data)
        tmp.replace(dest)
        got.append(f"{name}/{rel}")
    return got


def stopped_at(events: list[dict[str, Any]]) -> float | None:
    """When the pod stopped itself, as its own events say (the laptop was not there to see it)."""
    for kind in (EventKind.SELF_STOPPED, EventKind.WATCHDOG_STOP):
        ts = [e["ts"] for e in events if e.get("kind") == kind and e.get("ts")]
        if ts:
            return float(ts[-1])
    return None


def brief_price(cost_per_hr: float) -> float:
    return cost_per_hr * BRIEF_S / 3600


@contextmanager
def briefly_started(provider: Provider, pod: Pod, *, cost_per_hr: float, confirm, what: str, retry: str,
                    on_start, on_stop, on_wait=None, connect_timeout_s: float = 600) -> Iterator[Transport]:
    """Start a stopped pod, yield a connection to it, stop it again; asks first (confirm) with the price."""
    price = brief_price(cost_per_hr)
    question = (f"pod {pod.id} is {pod.state.value}; {what} are on its volume. Start it for about "
                f"{BRIEF_S / 60:.0f} minutes to fetch them (about ${price:.3f} at ${cost_per_hr:.3f}/h)?")
    if not confirm(question):
        raise PodtuneError(f"pod {pod.id} is {pod.state.value}; {what} are on its volume",
                           f"fetch them (starts the pod for about {BRIEF_S / 60:.0f} minutes, about ${price:.3f}): "
                           f"{retry} --yes")
    try:
        started = provider.start(pod.id)
    except CapacityError as exc:
        raise PodtuneError(f"pod {pod.id} cannot start now ({exc.message}); {what} stay on its volume",
                           f"try again later: {retry} --yes") from None
    on_start(started)
    try:
        transport = provider.connect(started, timeout_s=connect_timeout_s, on_wait=on_wait)
        try:
            guard = provider.self_stop_command(started)
            if guard:
                command = f"sleep {GUARD_S}; {guard}"
                transport.exec(f"nohup setsid sh -c {shlex.quote(command)} >/dev/null 2>&1 </dev/null &", timeout_s=30)
            yield transport
        finally:
            transport.close()
    finally:
        provider.stop(pod.id)
        on_stop(time.time())
