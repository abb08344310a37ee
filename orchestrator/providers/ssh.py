"""The ssh provider: a machine the user already has. Nothing to rent or stop; cost from a configured rate."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from remote.recipe import Recipe, SshHostSpec

from ..errors import ConfigError
from ..paths import known_hosts_path
from ..pod.ssh_transport import SSHTransport, open_if_ssh, probe_banner
from ..pod.transport import Transport
from ..pod.waiting import wait_until
from .base import GpuOffer, OwnMachine, Pod, PodState

if TYPE_CHECKING:
    from ..doctor import Check

# What `podtune init` writes for the user to fill in (the schema needs a host before the file is valid).
STARTER_HOST = {"host": "your-host.example.com", "port": 22, "user": "root", "key_path": "~/.ssh/id_ed25519",
                "usd_per_hour": 0.0}


def pod_id(h: SshHostSpec) -> str:
    """The host's pod id, which is also the label its host key is pinned under."""
    return f"ssh-{h.host}-{h.port}"


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

    @classmethod
    def from_recipe(cls, recipe: Recipe) -> SSHProvider:
        if recipe.compute.ssh is None:
            raise ConfigError("provider `ssh` needs compute.ssh in the recipe",
                              "add compute.ssh: {host: ..., key_path: ...}")
        return cls(recipe.compute.ssh)

    @classmethod
    def missing_credentials(cls, recipe: Recipe) -> list[tuple[str, str]]:
        if recipe.compute.ssh is None:
            return []  # the schema refuses this recipe before it gets here
        key = Path(os.path.expanduser(recipe.compute.ssh.key_path))
        if key.is_file():
            return []
        return [(f"the SSH private key {key} (compute.ssh.key_path)",
                 "point compute.ssh.key_path at the key you use for that host")]

    @classmethod
    def doctor_checks(cls, recipe: Recipe | None) -> list[Check]:
        return [ssh_host_check(recipe)] if recipe is not None and recipe.compute.ssh is not None else []

    @classmethod
    def starter_compute(cls, gpu: str | None) -> list[tuple[str, Any]]:
        return [("ssh", dict(STARTER_HOST))]

    def _pod(self, name: str = "ssh") -> Pod:
        h = self.host
        return Pod(
            id=pod_id(h), name=name, provider=self.name, state=PodState.RUNNING, gpu_type="own machine",
            cost_per_hr=h.usd_per_hour, ssh_host=h.host, ssh_port=h.port, workspace=h.workspace, python=h.python,
        )

    def offers(self, gpu_count: int = 1, cloud: str = "secure") -> list[GpuOffer]:
        return [GpuOffer("own machine", f"{self.host.user}@{self.host.host}", 0.0, self.host.usd_per_hour)]

    def connect(self, pod: Pod, *, timeout_s: float, on_wait=None) -> Transport:
        h = self.host
        sock = wait_until(lambda: open_if_ssh(h.host, h.port), timeout_s=timeout_s,
                          what=f"sshd on {h.host}:{h.port}", on_wait=on_wait,
                          hint=f"check the host is up: ssh -i {self.key_path} -p {h.port} {h.user}@{h.host}")
        return SSHTransport(host=h.host, port=h.port, user=h.user, key_path=self.key_path, pin_label=pod.id,
                            known_hosts=known_hosts_path()).connect(sock)


def ssh_host_check(recipe: Recipe) -> Check:
    """Log in to the recipe's host as a run would, and run its python: what `run` needs, tried before it."""
    from ..doctor import FAIL, OK, Check
    from ..errors import SSHError

    h = recipe.compute.ssh
    assert h is not None
    name = f"ssh host {h.user}@{h.host}:{h.port}"
    key = Path(os.path.expanduser(h.key_path))
    if not key.is_file():
        return Check(name, FAIL, f"compute.ssh.key_path {key} does not exist",
                     "point key_path at the private key you use for that host", True)
    if not probe_banner(h.host, h.port):
        return Check(name, FAIL, "nothing answers SSH there",
                     f"check the host is up and sshd listens on port {h.port}: ssh -i {key} -p {h.port} {h.user}@{h.host}",
                     True)
    # Pinned under the run's own label: a host key that changed since the last run is reported here too.
    transport = SSHTransport(host=h.host, port=h.port, user=h.user, key_path=key, pin_label=pod_id(h),
                             known_hosts=known_hosts_path(), connect_timeout_s=10)
    try:
        transport.connect()
        probe = transport.exec(f"{h.python} -c 'import sys; print(sys.version.split()[0])'", timeout_s=30)
    except SSHError as exc:
        return Check(name, FAIL, exc.message, exc.hint or "", True)
    finally:
        transport.close()
    if probe.rc != 0:
        return Check(name, FAIL, f"logged in, but `{h.python}` does not run there",
                     "set compute.ssh.python to an interpreter that exists on that machine", True)
    return Check(name, OK, f"logged in with {key}; python {probe.stdout.strip()} at {h.python}", required=True)
