"""The Hub token on the pod: 0600 from its first byte, in a 0700 folder, removed as soon as nothing needs it.

It goes to the pod's RAM (/dev/shm) when the pod has one: a RunPod pod's /dev/shm is its container's own tmpfs,
gone when the pod stops, whoever stops it (the console, a $0 balance, the watchdog). Otherwise it lives in a
folder on the volume, and the laptop (on a failed launch and at stop), the pipeline (right after the push and at
its end) and the watchdog (at every exit) remove it.
"""

from __future__ import annotations

import shlex
from pathlib import PurePosixPath

from remote.events import WorkspacePaths

from ..errors import PodtuneError
from .transport import Transport

RAM_DIR = "/dev/shm/podtune-secrets"

# Runs on the pod with its own python; the token arrives on stdin, never in argv or the environment.
# O_EXCL|O_NOFOLLOW: a file or symlink planted at the path is replaced, never written through.
_WRITE = r"""
import os, stat, sys
token = sys.stdin.buffer.read()
for path in sys.argv[1:]:
    folder = os.path.dirname(path)
    if folder.startswith("/dev/shm/") and not os.path.isdir("/dev/shm"):
        continue
    try:
        os.makedirs(os.path.dirname(folder), exist_ok=True)
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:
            pass
        info = os.lstat(folder)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            continue  # someone else's folder (or a symlink): not a place for our token
        os.chmod(folder, 0o700)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except OSError:
        continue
    with os.fdopen(fd, "wb") as fh:
        fh.write(token)
    print(path)
    sys.exit(0)
sys.exit("no private folder for the token on the pod")
"""


# Every secret a run may carry to the pod, by the suffix of its file: the Hub token, and the W&B key a recipe
# with `report_to: [wandb]` needs. Each travels and is removed the same way.
HF_TOKEN = "hf_token"
WANDB_KEY = "wandb_key"
KINDS = (HF_TOKEN, WANDB_KEY)


def secret_paths(layout: WorkspacePaths[PurePosixPath], run_id: str, kind: str) -> list[str]:
    """Where a run's secret of this kind may be, preferred first; removal tries all of them."""
    name = f"{run_id}.{kind}"
    return [f"{RAM_DIR}/{name}", f"{layout.secrets}/{name}"]


def token_paths(layout: WorkspacePaths[PurePosixPath], run_id: str) -> list[str]:
    """Where a run's token may be, preferred first; removal tries all of them."""
    return secret_paths(layout, run_id, HF_TOKEN)


def all_secret_paths(layout: WorkspacePaths[PurePosixPath], run_id: str) -> list[str]:
    return [p for kind in KINDS for p in secret_paths(layout, run_id, kind)]


def secret_files(layout: WorkspacePaths[PurePosixPath], run_id: str) -> list[str]:
    """Every place the run's secrets may be on the pod, and where older podtune kept the token: what a stop deletes."""
    return [*all_secret_paths(layout, run_id), str(layout.legacy_token)]


def deliver_secret(transport: Transport, python: str, layout: WorkspacePaths[PurePosixPath], run_id: str, value: str,
                   kind: str = HF_TOKEN) -> str:
    """Write one secret on the pod (on stdin, never in argv); returns its path there."""
    paths = " ".join(shlex.quote(p) for p in secret_paths(layout, run_id, kind))
    result = transport.exec(f"{shlex.quote(python)} -c {shlex.quote(_WRITE)} {paths}", stdin=value.encode(),
                            timeout_s=60)
    result.check("writing the Hub token on the pod" if kind == HF_TOKEN else f"writing the {kind} on the pod")
    return result.stdout.strip().splitlines()[-1]


def deliver_token(transport: Transport, python: str, layout: WorkspacePaths[PurePosixPath], run_id: str,
                  token: str) -> str:
    """Write the token on the pod; returns its path there."""
    return deliver_secret(transport, python, layout, run_id, token, HF_TOKEN)


def remove_token(transport: Transport, layout: WorkspacePaths[PurePosixPath], run_id: str) -> None:
    """Delete the run's secrets wherever they may be (and where older podtune kept the token); raises when the pod
    cannot be asked."""
    # Over the open SFTP channel, a request per path. A finished run's stop phase deletes them in the one command
    # that also fetches its report (remote_job.collect); this is for the other ends and as its fallback.
    for path in secret_files(layout, run_id):
        transport.remove(path)


def remove_token_quietly(transport: Transport, layout: WorkspacePaths[PurePosixPath], run_id: str) -> str | None:
    """remove_token, for cleanup after another failure: returns what went wrong instead of raising it."""
    try:
        remove_token(transport, layout, run_id)
    except (PodtuneError, OSError) as exc:
        return getattr(exc, "message", str(exc))
    return None
