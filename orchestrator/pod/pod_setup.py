"""Makes the pod's Python ready to train: the image's own when it already has everything, else a venv.

The venv lives on the volume under venvs/<hash of requirements + python version>, reuses the image's CUDA torch
(--system-site-packages; where the image's python is itself a venv, a .pth file naming that venv's folders, since
--system-site-packages reaches only the base interpreter's), and is reused for as long as the requirements do not
change. The requirements are the
recipe's (remote.requirements.for_recipe): a DeepSpeed recipe gets deepspeed, a wandb recipe gets wandb.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath

from remote.events import WorkspacePaths
from remote.requirements import REQUIREMENTS

from ..paths import REPO_ROOT
from .transport import ExecResult, Transport

SETUP_TIMEOUT_S = 30 * 60
CONSTRAINTS = REPO_ROOT / "constraints.txt"


@dataclass(frozen=True)
class SetupResult:
    python: str
    venv: str | None  # None: the image's interpreter had everything
    created: bool  # a venv was built now (slow) rather than reused
    seconds: float = 0.0  # how long building it took
    downloaded_bytes: int = 0  # what pip said it downloaded


# pip's line for each file it fetches: "  Downloading peft-0.21.2-py3-none-any.whl (500 kB)"
DOWNLOADING = re.compile(r"Downloading \S+ \(([\d.]+) (kB|MB|GB)\)")
UNITS = {"kB": 1e3, "MB": 1e6, "GB": 1e9}
HEARTBEAT_S = 5  # while pip is quiet (one big download), a line with the venv's size this often


# How the venv is made. 2: it sees the packages of an image whose python is itself a venv (image_site below).
# A new value builds new venvs (a venv made by 1 on such an image holds a torch pip downloaded, not the image's).
VENV_LAYOUT = 2
# A torch version pip accepts in `torch==VERSION` (PEP 440, local label included: 2.4.0a0+f70bd71a48.nv24.06).
PINNABLE = re.compile(r"\d+(\.\d+)*((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?(\+[A-Za-z0-9]+(\.[A-Za-z0-9]+)*)?")


def requirements_hash(python_version: str, requirements: tuple[str, ...] = REQUIREMENTS) -> str:
    # The constraints are part of what a venv is: new pins build a new one.
    text = json.dumps([python_version, sorted(requirements), CONSTRAINTS.read_text(encoding="utf-8"), VENV_LAYOUT])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def requirements_key(requirements: tuple[str, ...] = REQUIREMENTS) -> str:
    """Names a set of requirements whatever the pod's Python: under it the pod remembers the interpreter the last
    launch used, for the next warm start (remote_job.start_warm)."""
    return requirements_hash("", requirements)


def prepare(transport: Transport, layout: WorkspacePaths[PurePosixPath], python: str,
            requirements: tuple[str, ...] = REQUIREMENTS, on_line: Callable[[str], None] | None = None) -> SetupResult:
    """The python to train with; builds a venv with what the image lacks, showing pip's lines through on_line."""
    q = shlex.quote
    constraints = str(layout.constraints)
    wanted = " ".join(q(r) for r in requirements)
    probe = transport.exec(f"cd {q(str(layout.code))} && {q(python)} -m remote.requirements {wanted}", timeout_s=300)
    probe.check("checking the pod's Python packages")
    found = json.loads(probe.stdout.strip().splitlines()[-1])
    if not found["missing"]:
        return SetupResult(python=python, venv=None, created=False)
    venv = f"{layout.venvs}/{requirements_hash(found['python'], requirements)}"
    venv_python = f"{venv}/bin/python"
    if transport.exec(f"test -f {q(venv)}/.ready && test -x {q(venv_python)}", timeout_s=30).rc == 0:
        return SetupResult(python=venv_python, venv=venv, created=False)
    # The versions the project is tested with (constraints.txt, synced with the code): a new release on PyPI
    # never reaches a pod untested. constraints.txt pins no torch; the image's own version is pinned here, so
    # pip keeps the image's CUDA build or says why it cannot, and never downloads another (GBs, maybe not for
    # this driver).
    torch = found.get("torch")
    pin = [f"torch=={torch}"] if torch and PINNABLE.fullmatch(torch) else []
    install = " ".join(q(r) for r in [*found["missing"], *pin])
    make_venv = f"rm -rf {q(venv)}; {q(python)} -m venv --system-site-packages {q(venv)};" + see_image_site(
        venv_python, found.get("image_site") or [])
    started = time.monotonic()
    stream = getattr(transport, "stream", None)
    if stream is None or on_line is None:
        script = (
            f"set -e; {make_venv}"
            f" {q(venv_python)} -m pip install -q --disable-pip-version-check -c {q(constraints)} {install};"
            f" touch {q(venv)}/.ready"
        )
        transport.exec(script, timeout_s=SETUP_TIMEOUT_S).check("installing the training libraries on the pod")
        return SetupResult(python=venv_python, venv=venv, created=True, seconds=time.monotonic() - started)
    # A cold setup takes minutes: pip's own lines (what it collects and downloads, with sizes) and a heartbeat
    # with the venv's size reach the screen as they happen, instead of minutes of nothing.
    script = (
        f"set -e; echo 'creating the venv {venv}'; {make_venv}"
        f" (while sleep {HEARTBEAT_S} >/dev/null 2>&1; do echo \"still installing: $(du -sm {q(venv)} 2>/dev/null | cut -f1) MB in the venv\";"
        f" done) & beat=$!; trap 'kill $beat 2>/dev/null' EXIT;"
        f" PYTHONUNBUFFERED=1 {q(venv_python)} -m pip install --progress-bar off --disable-pip-version-check"
        f" -c {q(constraints)} {install} 2>&1; touch {q(venv)}/.ready"
    )
    session = stream(script, timeout_s=SETUP_TIMEOUT_S)
    downloaded = 0.0
    last: deque[str] = deque(maxlen=30)  # pip's error, if it fails, is in its last lines (stderr joined stdout)
    while line := session.readline():
        text = line.decode("utf-8", "replace").rstrip()
        found = DOWNLOADING.search(text)
        if found:
            downloaded += float(found.group(1)) * UNITS[found.group(2)]
        if text:
            last.append(text)
            on_line(text)
    done = session.finish()
    if done.rc != 0:
        ExecResult(done.rc, "", "\n".join([*last, done.stdout, done.stderr]).strip()).check(
            "installing the training libraries on the pod")
    return SetupResult(python=venv_python, venv=venv, created=True, seconds=time.monotonic() - started,
                       downloaded_bytes=int(downloaded))


def see_image_site(venv_python: str, image_site: list[str]) -> str:
    """Shell that makes the new venv see the image venv's packages (a .pth file listing its folders), or ""."""
    if not image_site:
        return ""
    code = ("import sys, sysconfig; open(sysconfig.get_paths()['purelib'] + '/podtune-image-site.pth', 'w')"
            ".write(''.join(d + chr(10) for d in sys.argv[1:]))")
    return f" {shlex.quote(venv_python)} -c {shlex.quote(code)} {' '.join(shlex.quote(d) for d in image_site)};"
