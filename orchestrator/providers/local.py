"""The local provider: this machine is the pod. No SSH, no bill; the embedded default and CI's provider."""

from __future__ import annotations

import os
import sys

from ..paths import podtune_home
from ..transport import LocalTransport, Transport
from .base import GpuOffer, OwnMachine, Pod, PodState

# Never inherited by the "pod" process: on a real pod these are not in its environment either.
SECRET_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "RUNPOD_API_KEY", "WANDB_API_KEY")


class LocalProvider(OwnMachine):
    name = "local"

    def _pod(self, name: str = "local") -> Pod:
        workspace = podtune_home() / "local" / "workspace"
        workspace.mkdir(parents=True, exist_ok=True)
        return Pod(
            id="local", name=name, provider=self.name, state=PodState.RUNNING, gpu_type="cpu",
            workspace=str(workspace), python=sys.executable,
        )

    def offers(self, gpu_count: int = 1, cloud: str = "secure") -> list[GpuOffer]:
        return [GpuOffer("cpu", "this machine", 0.0, 0.0)]

    def cpu_calibration(self, say=None) -> dict | None:
        """This machine is the pod: the plan measures its CPU (cached) instead of trusting the table's entry."""
        from ..calibrate import cpu_calibration

        return cpu_calibration(say=say)

    def connect(self, pod: Pod, *, timeout_s: float, on_wait: object = None) -> Transport:
        env = {k: v for k, v in os.environ.items() if k not in SECRET_ENV}
        return LocalTransport(env=env)
