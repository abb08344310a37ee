"""Makes the pod's Python ready to train: the image's own when it already has everything, else a venv.

The venv lives on the volume under venvs/<hash of requirements + python version>, reuses the image's CUDA torch
(--system-site-packages), and is reused for as long as the requirements do not change. The requirements are the
recipe's (remote.requirements.for_recipe): a DeepSpeed recipe gets deepspeed, a wandb recipe gets wandb.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import dataclass

from remote.requirements import REQUIREMENTS

from .paths import REPO_ROOT
from .remote_job import PodLayout
from .transport import Transport

SETUP_TIMEOUT_S = 30 * 60
CONSTRAINTS = REPO_ROOT / "constraints.txt"


@dataclass(frozen=True)
class SetupResult:
    python: str
    venv: str | None  # None: the image's interpreter had everything
    created: bool  # a venv was built now (slow) rather than reused


def requirements_hash(python_version: str, requirements: tuple[str, ...] = REQUIREMENTS) -> str:
    # The constraints are part of what a venv is: new pins build a new one.
    text = json.dumps([python_version, sorted(requirements), CONSTRAINTS.read_text(encoding="utf-8")])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def prepare(transport: Transport, layout: PodLayout, python: str,
            requirements: tuple[str, ...] = REQUIREMENTS) -> SetupResult:
    q = shlex.quote
    wanted = " ".join(q(r) for r in requirements)
    probe = transport.exec(f"cd {q(layout.code)} && {q(python)} -m remote.requirements {wanted}", timeout_s=300)
    probe.check("checking the pod's Python packages")
    found = json.loads(probe.stdout.strip().splitlines()[-1])
    if not found["missing"]:
        return SetupResult(python=python, venv=None, created=False)
    venv = f"{layout.venvs}/{requirements_hash(found['python'], requirements)}"
    venv_python = f"{venv}/bin/python"
    if transport.exec(f"test -f {q(venv)}/.ready && test -x {q(venv_python)}", timeout_s=30).rc == 0:
        return SetupResult(python=venv_python, venv=venv, created=False)
    install = " ".join(q(r) for r in found["missing"])
    # The versions the project is tested with (constraints.txt, synced with the code): a new release on PyPI
    # never reaches a pod untested. It pins no torch, so the image's CUDA build stays.
    script = (
        f"set -e; rm -rf {q(venv)}; {q(python)} -m venv --system-site-packages {q(venv)};"
        f" {q(venv_python)} -m pip install -q --disable-pip-version-check -c {q(layout.constraints)} {install};"
        f" touch {q(venv)}/.ready"
    )
    transport.exec(script, timeout_s=SETUP_TIMEOUT_S).check("installing the training libraries on the pod")
    return SetupResult(python=venv_python, venv=venv, created=True)
