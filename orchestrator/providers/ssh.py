"""The ssh provider: a machine the user already has. Nothing to rent or stop; cost from a configured rate."""

from __future__ import annotations

import os
from pathlib import Path

from remote.recipe import SshHostSpec

from ..errors import ConfigError
from ..paths import known_hosts_path
from ..ssh_transport import SSHTransport, probe_banner
from ..transport import Transport
from ..waiting import wait_until
from .base import GpuOffer, OwnMachine, Pod, PodState


class SSHProvider(OwnMachine):
    name = "ssh"

    def __init__(self, host: SshHostSpec):
        self.host = host
        self.key_path = Path(os.path.expanduser(host.key_path))
        if not self.key_path.is_file():
            raise ConfigError(
                f"compute.ssh.key_path: {self.key_path} does not exist",
                "point key_path at the private key you use for that host",
            )

    def _pod(self, name: str = "ssh") -> Pod:
        h = self.host
        return Pod(
            id=f"ssh-{h.host}-{h.port}", name=name, provider=self.name, state=PodState.RUNNING, gpu_type="own machine",
            cost_per_hr=h.usd_per_hour, ssh_host=h.host, ssh_port=h.port, workspace=h.workspace, python=h.python,
        )

    def offers(self, gpu_count: int = 1, cloud: str = "secure") -> list[GpuOffer]:
        return [GpuOffer("own machine", f"{self.host.user}@{self.host.host}", 0.0, self.host.usd_per_hour)]

    def connect(self, pod: Pod, *, timeout_s: float, on_wait=None) -> Transport:
        h = self.host
        wait_until(lambda: True if probe_banner(h.host, h.port) else None, timeout_s=timeout_s,
                   what=f"sshd on {h.host}:{h.port}", on_wait=on_wait,
                   hint=f"check the host is up: ssh -i {self.key_path} -p {h.port} {h.user}@{h.host}")
        return SSHTransport(host=h.host, port=h.port, user=h.user, key_path=self.key_path, pin_label=pod.id,
                            known_hosts=known_hosts_path()).connect()
