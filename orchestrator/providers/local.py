"""The local provider: this machine is the pod. No SSH, no bill; the embedded default and CI's provider."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from remote.recipe import Recipe

from ..paths import podtune_home
from ..pod.transport import LocalTransport, Transport
from .base import GpuOffer, OwnMachine, Pod, PodState

if TYPE_CHECKING:
    from ..doctor import Check

# Never inherited by the "pod" process: on a real pod these are not in its environment either.
SECRET_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "RUNPOD_API_KEY", "WANDB_API_KEY")


class LocalProvider(OwnMachine):
    name = "local"
    runs_on_this_machine = True

    @classmethod
    def from_recipe(cls, recipe: Recipe) -> LocalProvider:
        return cls()

    @classmethod
    def missing_credentials(cls, recipe: Recipe) -> list[tuple[str, str]]:
        return []  # nothing to log in to: the training runs in this process's own environment

    @classmethod
    def doctor_checks(cls, recipe: Recipe | None) -> list[Check]:
        return [local_python_check(required=recipe is not None)]

    def _pod(self, name: str = "local") -> Pod:
        workspace = podtune_home() / "local" / "workspace"
        workspace.mkdir(parents=True, exist_ok=True)
        return Pod(
            id="local", name=name, provider=self.name, state=PodState.RUNNING, gpu_type="cpu",
            workspace=str(workspace), python=sys.executable,
        )

    def offers(self, gpu_count: int = 1, cloud: str = "secure") -> list[GpuOffer]:
        return [GpuOffer("cpu", "this machine", 0.0, 0.0)]

    def calibration(self, say: Callable[[str], None] | None = None) -> dict[str, Any] | None:
        """This machine is the pod: the plan measures its CPU (cached) instead of trusting the table's entry."""
        from ..planning.calibrate import cpu_calibration

        return cpu_calibration(say=say)

    def connect(self, pod: Pod, *, timeout_s: float, on_wait: object = None) -> Transport:
        env = {k: v for k, v in os.environ.items() if k not in SECRET_ENV}
        return LocalTransport(env=env)


def local_python_check(*, required: bool) -> Check:
    """This interpreter trains a local run: it must be new enough and have the training packages."""
    from remote.requirements import REQUIREMENTS, missing

    from ..doctor import OK, Check, absent

    version = ".".join(map(str, sys.version_info[:3]))
    name = "local training (python)"
    if sys.version_info < (3, 11):
        return absent(name, f"python {version} is older than 3.11", "for provider local",
                      "use python 3.11 or newer", required)
    lacking = missing()
    if lacking:
        return absent(name, f"{sys.executable} ({version}) lacks {', '.join(lacking)}", "for provider local",
                      "pip install torch 'podtune[train]' in this environment (or `make install`)", required)
    return Check("local training (python)", OK,
                 f"{sys.executable} ({version}) has all {len(REQUIREMENTS)} training packages", required=required)
